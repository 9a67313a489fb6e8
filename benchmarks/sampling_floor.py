"""How low can a generator's shape and pair-trend error go when its rows are NEW draws?

    .venv/bin/python benchmarks/sampling_floor.py pipeline_configs/bench_default.yaml \
        [--rows 1000 train] [--splits 6] [--generated 0.81,1.85] [--stratify default,student]

The bench scores shape and pair-trend error of a synthetic table against the train split.
Even rows drawn from the true population score above zero there: two samples of one
population differ by sampling noise. This script measures that floor on the train split
alone (never the test split):

- `independent`: the train split cut into disjoint parts of m rows (halves and quarters,
  `--splits` random cuts each); one part scored against another. The metrics' noise
  scales as sqrt(1/n_a + 1/n_b) (checked by the halves and quarters agreeing), so the
  figure is rescaled to a generated table of n rows scored against the n_train train rows:
  error(m vs m) * sqrt((1/n + 1/n_train) / (2/m)). With `--stratify COLS`, each part
  holds every joint value of COLS in the train split's proportions (within a row), the
  floor of a generator that lays those classes out exactly (TabSyn's joint classes: the
  target and the two-valued columns).
- `bootstrap`: n rows drawn with replacement from the train split itself, i.e. a generator
  that copies the rows it is scored against; it beats the independent floor without
  learning anything, so a score under `independent` means copying or interpolating the
  train rows (check DCR), not a better model.

`--generated SHAPE,TREND` (percent, e.g. a bench result at the first `--rows`) prints its
ratio to the independent floor.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synthloom.bench.config import load_bench_config  # noqa: E402
from synthloom.metrics.quality import column_quality  # noqa: E402
from synthloom.seed_splits import seed_splits  # noqa: E402


def _errors(real, synthetic, schema) -> tuple[float, float]:
    q = column_quality(real, synthetic, schema)
    return q["column_shape_error_pct"], q["pair_trend_error_pct"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument(
        "--rows", nargs="+", default=["train"], help="generated table sizes ('train' = its size)"
    )
    parser.add_argument("--splits", type=int, default=6, help="random cuts per part size")
    parser.add_argument("--generated", help="SHAPE,TREND errors (%%) to compare with the floor")
    parser.add_argument("--stratify", help="comma-separated columns laid out exactly per part")
    args = parser.parse_args()

    bench = load_bench_config(args.config)
    seeded = seed_splits(bench.data.model_dump(), bench.run.seed)
    train, schema = seeded.splits.train.reset_index(drop=True), seeded.schema
    n_train = len(train)
    try:
        sizes = [n_train if r == "train" else int(r) for r in args.rows]
        generated = [float(v) for v in args.generated.split(",")] if args.generated else None
    except ValueError as err:
        parser.error(f"--rows takes row counts or 'train', --generated SHAPE,TREND: {err}")
    if any(n < 1 for n in sizes) or (generated is not None and len(generated) != 2):
        parser.error("--rows takes positive counts; --generated two numbers, SHAPE,TREND")
    columns = args.stratify.split(",") if args.stratify else []
    unknown = [c for c in columns if c not in train.columns]
    if unknown:
        parser.error(
            f"--stratify: {unknown} not in {args.config}'s table; its columns: "
            f"{', '.join(map(str, train.columns))}"
        )
    print(f"{args.config}: train split {n_train} rows, {len(schema.names)} columns")

    strata = (
        list(train.groupby(columns, dropna=False).indices.values())
        if columns
        else [np.arange(n_train)]
    )
    per_part: dict[int, np.ndarray] = {}
    for parts in (2, 4):
        scores = []
        for s in range(args.splits):
            rng = np.random.default_rng(s)
            halves: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
            for rows in strata:
                rows = rng.permutation(rows)
                k = len(rows) // parts
                halves[0].append(rows[:k])
                halves[1].append(rows[k : 2 * k])
            a = train.iloc[np.concatenate(halves[0])].reset_index(drop=True)
            b = train.iloc[np.concatenate(halves[1])].reset_index(drop=True)
            scores.append(_errors(a, b, schema))
        m = len(a)  # rows per part (stratified: a few fewer than n_train / parts)
        per_part[m] = np.asarray(scores)
        mean, std = per_part[m].mean(axis=0), per_part[m].std(axis=0, ddof=1)
        print(
            f"  {m} vs {m} disjoint train rows ({args.splits} cuts): shape {mean[0]:.2f} "
            f"± {std[0]:.2f} %, trend {mean[1]:.2f} ± {std[1]:.2f} %"
        )

    floors = {}
    for n in sizes:
        scaled = [
            scores.mean(axis=0) * np.sqrt((1 / n + 1 / n_train) / (2 / m))
            for m, scores in per_part.items()
        ]
        floors[n] = np.mean(scaled, axis=0)
        spread = np.abs(scaled[0] - scaled[1])
        boot = np.asarray(
            [
                _errors(train, train.sample(n, replace=True, random_state=s), schema)
                for s in range(args.splits)
            ]
        )
        print(
            f"  {n} generated rows: independent floor shape {floors[n][0]:.2f} % "
            f"(halves vs quarters differ by {spread[0]:.2f}), trend {floors[n][1]:.2f} % "
            f"({spread[1]:.2f}); bootstrap copies shape {boot[:, 0].mean():.2f} "
            f"± {boot[:, 0].std(ddof=1):.2f} %, trend {boot[:, 1].mean():.2f} "
            f"± {boot[:, 1].std(ddof=1):.2f} %"
        )
    if generated is not None:
        shape, trend = generated
        floor = floors[sizes[0]]
        print(
            f"  given ({sizes[0]} rows): shape {shape:.2f} % = {shape / floor[0]:.2f}x the "
            f"floor, trend {trend:.2f} % = {trend / floor[1]:.2f}x the floor"
        )


if __name__ == "__main__":
    main()
