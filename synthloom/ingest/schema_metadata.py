"""The TableSchema kept in Arrow/Parquet key-value metadata, so a Parquet file carries its types.

`schema_to_arrow_metadata(schema)` returns ``{SCHEMA_METADATA_KEY: schema JSON (UTF-8)}``
with ``SCHEMA_METADATA_KEY = b"synthloom.schema"``, to merge into a table's metadata;
`schema_from_arrow_metadata(meta)` reads it back (bytes or str keys and values), returns
None when the key is absent and raises `synthloom.errors.DataError` when the stored value
is not a valid schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from synthloom.errors import data_error
from synthloom.schema import TableSchema

__all__ = ["SCHEMA_METADATA_KEY", "schema_from_arrow_metadata", "schema_to_arrow_metadata"]

SCHEMA_METADATA_KEY = b"synthloom.schema"


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
