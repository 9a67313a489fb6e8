"""An exploration split for a labelled-text config: real texts no benchmark draw uses.

    .venv/bin/python benchmarks/text_exploration_split.py pipeline_configs/text_rt_bare.yaml \
        data/explore/rt_explore.csv [--per-label 200] [--draws 5] [--seed 12345]

Writes `--per-label` texts per label (columns: the config's text column and target) drawn
from the config's source after removing every text of the test split, the real-train
split and the seeds of draws 0 .. `--draws` - 1 (the split `benchmarks/text_quality.py`
makes with `data.seed_draw`). Choose settings with `text_quality.py --test-source FILE`,
then score the chosen samples on the report split (`--reuse`): never tune on the test split.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synthloom.config import PipelineConfig, load_raw_config  # noqa: E402
from synthloom.ingest.sources import load_source  # noqa: E402
from synthloom.text_splits import text_splits_for, text_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-label", type=int, default=200)
    parser.add_argument("--draws", type=int, default=5, help="seed draws whose seeds to exclude")
    parser.add_argument("--seed", type=int, default=12345, help="which free texts to take")
    args = parser.parse_args()
    # validated as benchmarks/text_quality.py does, so the splits are the benchmark's
    cfg = PipelineConfig.model_validate(load_raw_config(args.config)).model_dump(mode="json")
    data, run_seed = cfg["data"], cfg["run"]["seed"]
    raw = load_source(data["source"], data.get("format"))
    used: set[str] = set()
    for draw in range(args.draws):
        splits = text_splits_for(raw, {**data, "seed_draw": draw}, seed=run_seed)
        for frame in (splits.seeds, splits.test, splits.real_train):
            used |= set(frame["text"])
    table = text_table(
        raw,
        data["source"],
        data["text_column"],
        data["target"],
        data.get("labels"),
        data.get("min_text_chars") or 1,
    )
    free = table[~table["text"].isin(used)]
    rng = np.random.default_rng(args.seed)
    parts = [
        rows.iloc[rng.permutation(len(rows))[: args.per_label]]
        for _, rows in free.groupby("label", sort=True)
    ]
    out = pd.concat(parts, ignore_index=True)
    out = out.rename(columns={"text": data["text_column"], "label": data["target"]})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(args.out, index=False)
    counts = out[data["target"]].value_counts().to_dict()
    print(f"{args.out}: {len(out)} texts {counts}; {len(used)} texts of the benchmark left out")


if __name__ == "__main__":
    main()
