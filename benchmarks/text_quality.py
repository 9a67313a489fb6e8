"""Does a text method's synthetic data help the student? Several seed draws, one test set.

    .venv/bin/python benchmarks/text_quality.py --config pipeline_configs/text_trec.yaml \\
        [--draws 0 1 2] [--set method.samples_per_prompt=32 ...] [--filter-set KEY=VALUE ...]
        [--evaluate-set KEY=VALUE ...] [--samples-dir DIR [--reuse]] [--threads 2] [--out F]
        [--device cpu|cuda|auto] [--test-source FILE]

The protocol of issue 18: for each seed draw d, `text_splits(..., seed=run.seed,
seed_draw=d)` keeps the test and real-train texts fixed and draws new seeds; the method
generates `generate.num_rows` samples from them, the config's text filter runs (with the
label-margin rule's scorer when it is on), and `evaluate_text_sets` trains the fast student
(C chosen on the seeds alone, the same for every training set; seeds keep
`evaluate.seed_share` of the weight in the mix) on seeds / synthetic / seeds + synthetic /
real train and scores each on the same real test split. Printed: one row per draw, then the
mean +- std over draws of each student, and the paired difference seeds + synthetic minus
seeds (mean +- std; "inside the noise" when |mean| < its std). Generation speed (samples/s
and decoder tokens/s of the same run, their ratio the tokens per kept sample), the
unfinished share (`runner.unfinished_share`, recomputed so that samples stored before it
existed count the same way) and what the filter removed are reported per draw.

`--samples-dir` keeps each draw's generated samples (keyed by the method section's hash)
and filtered samples (keyed by the filter rules too); with `--reuse` they are not computed
again, so filter and student variants compare on the same samples. Never tune on what this prints for the test split: it is the report.

`--test-source FILE` scores every student on all rows of FILE instead (same text and label
columns, the config's labels and minimum length; rows that are also seeds or real-train
texts dropped): the EXPLORATION split, where a setting may be chosen before the report
split confirms it (TREC: `test.csv`). `--out` is rewritten after every draw, so a run cut
short keeps the draws it finished.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from synthloom.config import PipelineConfig, load_raw_config  # noqa: E402
from synthloom.ingest.sources import load_source  # noqa: E402
from synthloom.methods.text.runner import (  # noqa: E402
    filter_samples,
    generator_model,
    run_generator,
    text_model_box,
    unfinished_share,
)
from synthloom.metrics.text_evaluation import evaluate_text_sets  # noqa: E402
from synthloom.models.encoder import encode_texts, load_encoder  # noqa: E402
from synthloom.text_splits import text_splits_for, text_table  # noqa: E402

STUDENTS = ("seeds", "synthetic", "seeds_plus_synthetic", "real_train")


def assign(tree: dict, dotted: str) -> None:
    """Apply one KEY=VALUE (dotted key, YAML value) to a nested dict."""
    key, _, value = dotted.partition("=")
    *path, leaf = key.split(".")
    node = tree
    for part in path:
        node = node.setdefault(part, {})
    node[leaf] = yaml.safe_load(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--draws", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--filter-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--evaluate-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--device", default="cpu", help="generator, scorer and encoder device (default cpu)"
    )
    parser.add_argument("--model-cache", default=str(REPO / "data" / "models"))
    parser.add_argument("--samples-dir", default=None)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument(
        "--test-source",
        default=None,
        help="score on all rows of this file (the exploration split) instead of the "
        "config's test split",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    raw_cfg = load_raw_config(args.config)
    for dotted in args.set:
        assign(raw_cfg, dotted)
    for dotted in args.filter_set:
        assign(raw_cfg, "text_filter." + dotted)
    for dotted in args.evaluate_set:
        assign(raw_cfg, "evaluate." + dotted)
    cfg = PipelineConfig.model_validate(raw_cfg).model_dump(mode="json")
    data, method, rules = cfg["data"], cfg["method"], cfg["text_filter"]
    method_key = hashlib.sha256(
        json.dumps([method, data, cfg["generate"], cfg["run"]["seed"]], sort_keys=True).encode()
    ).hexdigest()[:10]
    raw = load_source(data["source"], data.get("format"))
    models = text_model_box(
        args.device, args.model_cache, cfg["evaluate"]["encoder"], method["decoder_dtype"]
    )
    encoder = load_encoder(cfg["evaluate"]["encoder"], device=args.device)
    samples_dir = Path(args.samples_dir) if args.samples_dir else None
    exploration = exploration_test(args.test_source, data) if args.test_source else None
    print(
        f"{args.config}: method {method['name']}, {cfg['generate']['num_rows']} samples per "
        f"draw, draws {args.draws}, filter {json.dumps(rules)}; torch threads {args.threads}, "
        f"device {args.device}; test split: "
        + (
            f"{args.test_source} ({len(exploration)} rows)"
            if exploration is not None
            else "the config's"
        )
    )

    rows: list[dict] = []
    for draw in args.draws:
        splits = text_splits_for(raw, {**data, "seed_draw": draw}, seed=cfg["run"]["seed"])
        path = samples_dir / f"{method_key}_draw{draw}.parquet" if samples_dir else None
        if path is not None and args.reuse and path.is_file():
            frame = pd.read_parquet(path)
            gen = json.loads(path.with_suffix(".json").read_text())
        else:
            frame, gen = run_generator(
                method,
                splits.seeds,
                cfg["generate"]["num_rows"],
                models,
                seed=cfg["run"]["seed"] + draw,
                label_descriptions=data["label_descriptions"],
            )
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                frame.to_parquet(path)
                path.with_suffix(".json").write_text(json.dumps(gen))

        def embed(texts: list[str]) -> np.ndarray:
            return encode_texts(*encoder, texts)

        rules_key = hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()[:8]
        kept_path = path.with_name(f"{path.stem}_kept{rules_key}.parquet") if path else None
        if kept_path is not None and args.reuse and kept_path.is_file():
            kept = pd.read_parquet(kept_path)
            filtered = json.loads(kept_path.with_suffix(".json").read_text())
        else:
            start = time.perf_counter()
            result = filter_samples(
                frame,
                splits.seeds,
                rules,
                models=models,
                scorer_model=generator_model(method),
                task=method.get("task"),
                label_descriptions=data["label_descriptions"],
                embed=embed,
            )
            kept = result.kept
            filtered = {"seconds": time.perf_counter() - start, "counts": result.counts}
            if kept_path is not None:
                kept.to_parquet(kept_path)
                kept_path.with_suffix(".json").write_text(json.dumps(filtered))
        filter_seconds = filtered["seconds"]
        test = splits.test
        if exploration is not None:
            used = set(splits.seeds["text"]) | set(splits.real_train["text"])
            test = exploration[~exploration["text"].isin(used)].reset_index(drop=True)
        real = {"seeds": splits.seeds, "test": test, "real_train": splits.real_train}
        metrics, _ = evaluate_text_sets(
            kept, real, encoder, cfg["evaluate"], seed=cfg["run"]["seed"]
        )
        m = gen["metrics"]
        row = {
            "draw": draw,
            "generated": int(m["samples"]),
            "kept": len(kept),
            "samples_per_s": m["samples_per_second"],
            "decoder_dtypes": gen.get("decoder_dtypes", {}),
            "tokens_per_s": m["tokens_per_second"],
            "unfinished_share": unfinished_share(gen["counts"], m),
            "filter_s": filter_seconds,
            "removed": {k: v for k, v in filtered["counts"].items() if v},
            "student_c": metrics["student_c"],
            **{s: metrics[f"student_{s}_accuracy"] for s in STUDENTS},
            "gain": metrics["student_gain_accuracy"],
            "label_agreement": metrics.get("synthetic_label_agreement", float("nan")),
            # nearest seed of the same label: samples vs the real test texts
            "seed_topic_share": metrics.get("synthetic_nearest_seed_label_share", float("nan")),
            "test_seed_topic_share": metrics.get("test_nearest_seed_label_share", float("nan")),
            **{  # the fine-tuned student, with --evaluate-set student=both
                f"full_{s}": metrics[f"student_full_{s}_accuracy"]
                for s in (*STUDENTS, "gain")
                if f"student_full_{s}_accuracy" in metrics
            },
            "distinct_2": metrics.get("distinct_2", float("nan")),
            "self_bleu": metrics.get("self_bleu", float("nan")),
            "mmd2": metrics.get("mmd2_to_real", float("nan")),
        }
        rows.append(row)
        print(
            f"draw {draw}: generated {row['generated']} ({row['samples_per_s']:.2f}/s, "
            f"{row['tokens_per_s']:.0f} tok/s, weights {row['decoder_dtypes']}, unfinished {row['unfinished_share']:.1%}), "
            f"kept {row['kept']} (filter {filter_seconds:.0f} s; removed {row['removed']}); "
            f"C {row['student_c']:g}; student accuracy: "
            + ", ".join(f"{s} {row[s]:.3f}" for s in STUDENTS)
            + f"; gain {row['gain']:+.3f}; label agreement {row['label_agreement']:.3f}"
            + f"; nearest seed of the label {row['seed_topic_share']:.3f} "
            + f"(real test {row['test_seed_topic_share']:.3f})",
            flush=True,
        )
        if args.out:
            write_results(args.out, cfg, args, rows)
    table = pd.DataFrame(rows)
    print("\nmean +- std over draws " + str(args.draws) + ":")
    full = [c for c in table.columns if c.startswith("full_")]
    columns = (*STUDENTS, "gain", *full, "label_agreement", "seed_topic_share")
    for col in (*columns, "test_seed_topic_share", "distinct_2", "self_bleu", "mmd2"):
        values = table[col].astype(float)
        print(
            f"  {col:22s} {values.mean():.3f} +- {values.std(ddof=1) if len(values) > 1 else 0:.3f}"
        )
    gain = table["gain"].astype(float)
    spread = gain.std(ddof=1) if len(gain) > 1 else float("nan")
    verdict = "inside the noise" if not abs(gain.mean()) > spread else "outside the noise"
    print(f"  paired gain seeds+synthetic - seeds: {gain.mean():+.3f} +- {spread:.3f} ({verdict})")


def exploration_test(path: str, data: dict) -> pd.DataFrame:
    """All rows of `path` with a text and one of the config's labels, as columns text,
    label: `text_table` with the config's text column, target, labels and minimum length."""
    return text_table(
        load_source(path, data.get("format")),
        path,
        data["text_column"],
        data["target"],
        data.get("labels"),
        data.get("min_text_chars") or 1,
    )


def write_results(out: str, cfg: dict, args: argparse.Namespace, rows: list[dict]) -> None:
    """The config, the test split used and every finished draw's row, as JSON."""
    record = {"config": cfg, "test_source": args.test_source, "rows": rows}
    Path(out).write_text(json.dumps(record, indent=1, default=str))


if __name__ == "__main__":
    main()
