"""What a generation request will write, checked against the disk before it starts.

estimated bytes = num_rows x bytes per row x OUTPUT_COPIES, where bytes per row is the seed
table's own compressed Parquet data (footer and metadata excluded) divided by its rows, and
OUTPUT_COPIES counts the generate stage's shards and the filter stage's kept rows. A request
whose estimate exceeds DISK_SHARE of the free space of the data directory is refused.
"""

from __future__ import annotations

import errno
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from synthloom.errors import ConfigError

OUTPUT_COPIES = 2
DISK_SHARE = 0.9


@dataclass(frozen=True)
class OutputEstimate:
    """The bytes `num_rows` generated rows will take, next to the free space they go to."""

    num_rows: int
    bytes_per_row: float
    estimated_bytes: int
    free_bytes: int
    directory: str

    @property
    def fits(self) -> bool:
        return self.estimated_bytes <= DISK_SHARE * self.free_bytes

    @property
    def max_rows_that_fit(self) -> int:
        per_row = max(self.bytes_per_row * OUTPUT_COPIES, 1e-9)
        return int(DISK_SHARE * self.free_bytes / per_row)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fits": self.fits}


def parquet_bytes_per_row(path: str | Path) -> float:
    """Compressed column-data bytes per row of a Parquet file (0.0 for an empty file)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    if meta.num_rows == 0:
        return 0.0
    data = sum(
        meta.row_group(g).column(c).total_compressed_size
        for g in range(meta.num_row_groups)
        for c in range(meta.num_columns)
    )
    return data / meta.num_rows


def estimate_output(num_rows: int, bytes_per_row: float, directory: str | Path) -> OutputEstimate:
    """The estimate for `num_rows` rows written under `directory` (which must exist)."""
    free = shutil.disk_usage(directory).free
    return OutputEstimate(
        num_rows=int(num_rows),
        bytes_per_row=round(float(bytes_per_row), 3),
        estimated_bytes=int(num_rows * bytes_per_row * OUTPUT_COPIES),
        free_bytes=int(free),
        directory=str(directory),
    )


def check_output_fits(estimate: OutputEstimate) -> OutputEstimate:
    """`estimate` when it fits on the disk; otherwise a ConfigError with the numbers and fix."""
    if estimate.fits:
        return estimate
    raise ConfigError(
        f"generate.num_rows {estimate.num_rows:,} does not fit on the disk: "
        f"{estimate.num_rows:,} rows x {estimate.bytes_per_row:,.1f} bytes per row (the seed "
        f"table's Parquet size) x {OUTPUT_COPIES} copies (generated shards, filtered rows) "
        f"= {_size(estimate.estimated_bytes)}, but {estimate.directory} has "
        f"{_size(estimate.free_bytes)} free (at most {DISK_SHARE:.0%} of it is used). Fix: "
        f"lower generate.num_rows to at most {estimate.max_rows_that_fit:,}, free disk space, "
        "or run with --data-dir on a larger disk."
    )


def disk_full_error(error: BaseException | None) -> OSError | None:
    """The "no space left on device" OSError in `error`'s cause/context chain, or None."""
    seen = 0
    while error is not None and seen < 20:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return error
        error = error.__cause__ or error.__context__
        seen += 1
    return None


def disk_full_message(stage: str, directory: str | Path, error: OSError, run_id: str) -> str:
    """What to tell a user whose stage ran out of disk: where, how much is free, the fix."""
    free = _size(shutil.disk_usage(directory).free) if Path(directory).exists() else "?"
    return (
        f"Stage {stage!r} ran out of disk space ({error.strerror or error}) writing under "
        f"{directory} ({free} free now). The stage's partial output was removed; earlier "
        "stages are intact. Fix: free disk space (or lower generate.num_rows), then "
        f"`synthloom resume {run_id}` continues from this stage; or use --data-dir on a larger "
        "disk."
    )


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError(n)
