"""The headline metrics of a pipeline run, in display order: what `synthloom run` prints
at its end, what `synthloom compare` tabulates by default and what a run's artifact page
lists first. A run shows those it has (a tabular run has no student accuracy)."""

HEADLINE_METRICS = (
    "column_shape_error_pct",
    "pair_trend_error_pct",
    "mle_auc_mean",
    "mle_auc_std",
    "mle_rmse_mean",
    "real_mle_auc_mean",
    "real_mle_rmse_mean",
    "dcr_share",
    "exact_copy_rate",
    "c2st",
    "filter_valid_row_rate",
    "generate_rows_per_second",
    # labelled text (flows/text.py)
    "generate_samples_per_second",
    "filter_kept_rate",
    "distinct_2",
    "self_bleu",
    "vendi_score",
    "mmd2_to_real",
    "student_synthetic_accuracy",
    "student_seeds_accuracy",
    "student_seeds_plus_synthetic_accuracy",
    "student_real_train_accuracy",
    "student_gain_accuracy",  # seeds + synthetic minus seeds alone
)
