"""Message pieces shared by `sources` and `inference` (a private module of the package).

Every `synthloom.errors.DataError` of the package quotes names and lists the same way:

* `quote_names(names, limit=40)`: ``'a', 'b', ... (N more)``; `shorten` joins items
  already quoted the same way (default limit 30).
* `did_you_mean(name, options)`: `` (did you mean 'x', 'y'?)`` for up to 3 close matches
  (difflib ratio >= 0.6), else ``""``.
* `check_duplicate_names(source, names, where)`: a DataError naming up to `MAX_SHOWN`
  repeated column names with their counts, ``column=`` the first of them.
* `MAX_SHOWN` (5): how many offending values, rows or names a message shows.

The names are public within the package (tests/test_architecture.py lets only the package
import this module); outside it they are no API.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any

from synthloom.errors import data_error

MAX_SHOWN = 5


def did_you_mean(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def shorten(items: Sequence[str], limit: int = 30) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def quote_names(names: Iterable[Any], limit: int = 40) -> str:
    items = [repr(str(n)) for n in names]
    return shorten(items, limit)


def check_duplicate_names(source: str, names: Sequence[str], where: str) -> None:
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    dups = [n for n, c in seen.items() if c > 1]
    if dups:
        shown = ", ".join(f"{n!r} ({seen[n]} times)" for n in dups[:MAX_SHOWN])
        raise data_error(
            source,
            f"{where} repeats column names: {shown}. Columns must have unique names.",
            "rename or remove the repeated columns in the file so every header is unique.",
            column=dups[0],
        )
