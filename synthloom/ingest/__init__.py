"""Seed data in: read a source, check and type it, infer its schema.

| module             | what                                                             |
| ------------------ | ---------------------------------------------------------------- |
| sources.py         | `load_source` (files, saved datasets, named datasets), CSV        |
|                    | delimiter sniffing, UTF-8 checks, `source_files` (what is hashed) |
| inference.py       | `prepare_seed_table` / `infer_schema`: validation, coercion and   |
|                    | kind inference, their thresholds (`NUMERIC_PARSE_SHARE`, ...)     |
| schema_metadata.py | the TableSchema in Arrow/Parquet metadata (`SCHEMA_METADATA_KEY`) |
| _text.py           | how DataError messages quote names; the duplicate-name check      |

The names below are re-exported, so ``from synthloom.ingest import load_source`` works;
the package's own code imports from the module that defines a name.
"""

from synthloom.ingest.inference import default_max_categories, infer_schema, prepare_seed_table
from synthloom.ingest.schema_metadata import (
    SCHEMA_METADATA_KEY,
    schema_from_arrow_metadata,
    schema_to_arrow_metadata,
)
from synthloom.ingest.sources import (
    CSV_DELIMITERS,
    CSV_READ_KEY,
    FORMATS,
    load_source,
    sniff_delimiter,
    source_files,
)

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
