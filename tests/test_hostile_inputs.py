"""Issue 20's hostile inputs, one test each: seed files a tired user or an attacker might
pass as `data.source`, and config files they might write. Each either reads as a usable
table or ends with ONE paragraph that names the file (and the column or key) and the fix;
never a traceback from pandas, YAML or pydantic. The sources go through `seed_splits`
(exactly the ingest stage's computation, without Prefect); the configs through
`synthloom validate`, the CLI's own path, so the exit code and stderr are checked too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cli.main import main
from synthloom.config import load_config
from synthloom.config.base import MAX_YAML_NODES
from synthloom.errors import SynthloomError
from synthloom.runs import checked_run_id, run_id_for
from synthloom.seed_splits import seed_splits

ROWS = 60


def _labels(n: int = ROWS) -> list[str]:
    return ["good" if i % 2 else "bad" for i in range(n)]


def _table(n: int = ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"age": rng.integers(18, 80, n), "job": rng.choice(list("abc"), n), "status": _labels(n)}
    )


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False)


def _lines(header: str, row: Callable[[int], str], n: int = ROWS) -> str:
    return header + "\n" + "".join(row(i) + "\n" for i in range(n))


def _with(column: str, values: list) -> str:
    frame = _table()
    frame[column] = values
    return _csv(frame)


def _infinite_age() -> str:
    frame = _table().astype({"age": float})
    frame.loc[3, "age"] = np.inf
    return _csv(frame)


# name -> (file contents: str or bytes, expected: "ok" or a phrase of the error)
SOURCES: dict[str, tuple[str | bytes, str]] = {
    "empty.csv": ("", "the file is empty"),
    "newlines_only.csv": ("\n\n\n", "the file is empty"),
    "header_only.csv": ("age,job,status\n", "no rows"),
    "one_row.csv": ("age,job,status\n41,a,good\n", "single distinct value"),
    "two_rows.csv": ("age,job,status\n41,a,good\n30,b,bad\n", "too few"),
    "garbage.csv": (
        bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8)),
        "not valid UTF-8",
    ),
    "garbage.parquet": (b"PAR1" + bytes(range(256)) * 8, "could not be read as Parquet"),
    "latin1.csv": (
        _lines("age,job,status", lambda i: f"{i},caf\xe9,good").encode("latin-1"),
        "Latin-1",
    ),
    "duplicate_header.csv": (
        _lines("age,age,status", lambda i: f"{i},{i},good"),
        "repeats column names",
    ),
    "first_row_too_long.csv": (
        _lines("age,job,status", lambda i: f"{i},a,good" + (",x" if i % 7 == 0 else "")),
        "Expected 3 fields in line 2",
    ),
    "later_row_too_long.csv": (
        _lines("age,job,status", lambda i: f"{i},a,good" + (",x" if i == 5 else "")),
        "Expected 3 fields in line 7",
    ),
    "unterminated_quote.csv": (
        'age,job,status\n1,"open,good\n2,a,bad\n',
        "could not be parsed as CSV",
    ),
    "infinity.csv": (_infinite_age(), "infinite values at row 4"),
    "json_breaking_strings.csv": (
        _with("job", ['{"a": "x\\"}\n\u2028 ]' if i % 3 == 0 else "plain" for i in range(ROWS)]),
        "ok",
    ),
    "nul_bytes.csv": (_lines("age,job,status", lambda i: f"{i},a\x00b,{_labels()[i]}"), "ok"),
    "unicode_headers.csv": (
        _csv(_table().rename(columns={"age": "âge 年齢", "job": "jöb/💼"})),
        "ok",
    ),
    "identifier_column.csv": (
        _with("id", [f"id{i}" for i in range(ROWS)]),
        "looks like an identifier",
    ),
    "single_class.csv": (_with("status", ["good"] * ROWS), "single distinct value"),
    "null_target.csv": (_with("status", [None] * ROWS), "entirely empty"),
    "empty_feature.csv": (
        _lines("age,job,status", lambda i: f",a,{_labels()[i]}"),
        "data.drop_columns",
    ),
    "no_target_column.csv": (_lines("age,job", lambda i: f"{i},a"), "is not in the table"),
    "padded_header.csv": (
        _lines(" age , job , status ", lambda i: f"{i},a,{_labels()[i]}"),
        "did you mean ' status '",
    ),
    "semicolons_with_bom.csv": (
        "\ufeff" + _lines("age;job;status", lambda i: f"{i};a;{_labels()[i]}"),
        "ok",
    ),
    "thousands_separators.csv": (
        _lines("age,income,status", lambda i: f'{i},"{1000 + 7 * i:,}",{_labels()[i]}'),
        "ok",
    ),
    "crlf.csv": (
        _lines("age,job,status", lambda i: f"{i},a,{_labels()[i]}\r").replace(
            "status\n", "status\r\n"
        ),
        "ok",
    ),
    "huge_cell.csv": (
        _lines(
            "age,job,status", lambda i: f"{i},{'x' * 100_000 if i == 0 else 'a'},{_labels()[i]}"
        ),
        "ok",
    ),
    "bad_line.jsonl": ('{"age": 1, "status": "good"}\n{not json\n', "line 2 is not valid JSON"),
    "scalars.json": ("[1, 2, 3]", "not an object"),
    "nested.json": (
        json.dumps([{"age": i, "job": {"x": [i]}, "status": _labels()[i]} for i in range(ROWS)]),
        "nested values",
    ),
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_hostile_seed_file_reads_or_ends_with_one_paragraph_and_the_fix(tmp_path, name) -> None:
    content, expected = SOURCES[name]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    try:
        seeded = seed_splits({"source": str(path), "target": "status"}, 0)
    except SynthloomError as error:
        message = str(error)
        assert expected != "ok", f"{name} should have been read: {message}"
        assert error.exit_code == 2
        assert expected in message and str(path) in message, message
        assert "Fix" in message and "\n" not in message.strip(), message
        return
    assert expected == "ok", f"{name} was read; expected an error saying {expected!r}"
    assert len(seeded.table) == ROWS and seeded.schema.target == "status"
    assert len(seeded.splits.train) > 0 and len(seeded.splits.test) > 0


def test_a_longer_first_row_is_an_error_not_an_index_column(tmp_path) -> None:
    """pandas takes a first data row one field longer than the header as the index and
    shifts every value a column left (here the target would become 'x'); it is refused."""
    path = tmp_path / "shifted.csv"
    path.write_text("age,job,status\n1,a,good,x\n2,b,bad\n3,c,good\n")
    with pytest.raises(SynthloomError, match="Expected 3 fields in line 2"):
        seed_splits({"source": str(path), "target": "status"}, 0)


GOOD = {
    "data": {"source": "seeds.csv", "target": "status"},
    "method": {"name": "marginals"},
    "generate": {"num_rows": 10},
}


def _bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n" + yaml.safe_dump(GOOD)


def _good_with(section: str, **values) -> str:
    config = json.loads(json.dumps(GOOD))
    config.setdefault(section, {}).update(values)
    return yaml.safe_dump(config)


# name -> (config text or bytes, a phrase of the error)
CONFIGS: dict[str, tuple[str | bytes, str]] = {
    "python_object_tag": (
        yaml.safe_dump(GOOD) + "evil: !!python/object/apply:os.system ['touch pwned']\n",
        "could not determine a constructor",
    ),
    "python_name_tag": ("data: !!python/name:os.system\n", "could not determine a constructor"),
    "alias_bomb": (_bomb(), f"more than the {MAX_YAML_NODES:,}"),
    "key_written_twice": (
        yaml.safe_dump(GOOD) + "method:\n  name: difflm\n",
        "`method` is written twice",
    ),
    "tab_indentation": ("data:\n\tsource: x\n", "line 2, column 1"),
    "binary": (b"\x00\x01\xfe\xff", "not UTF-8 text"),
    "a_list": ("- data\n- method\n", "must hold a YAML mapping"),
    "a_scalar": ("hello\n", "must hold a YAML mapping"),
    "empty": ("", "required key `data` is missing"),
    "unknown_section": (yaml.safe_dump({**GOOD, "evil": 1}), "unknown key `evil`"),
    "misspelt_key": (_good_with("generate", num_row=5), "Did you mean `num_rows`?"),
    "unknown_method": (_good_with("method", name="gpt5"), "unknown method 'gpt5'"),
    "unknown_method_key": (_good_with("method", steps=5), "unknown key `method.steps`"),
    "unknown_device": (_good_with("run", device="tpu"), "`run.device`"),
    "negative_rows": (_good_with("generate", num_rows=-5), "greater than 0, got -5"),
    "zero_rows": (_good_with("generate", num_rows=0), "greater than 0, got 0"),
    "string_rows": (_good_with("generate", num_rows="lots"), "got 'lots'"),
    "fractional_rows": (_good_with("generate", num_rows=10.5), "fractional part"),
    "yes_for_rows": (_good_with("generate", num_rows=True), "yes/no value (true) where a number"),
    "absurd_rows": (_good_with("generate", num_rows=10**14), "generate.max_rows"),
    "negative_seed": (_good_with("run", seed=-1), "`run.seed`"),
    "huge_seed": (_good_with("run", seed=10**23), "`run.seed`"),
    "nan_fraction": (
        yaml.safe_dump(GOOD).replace("target: status", "target: status\n  test_fraction: .nan"),
        "`data.test_fraction`",
    ),
    "list_target": (_good_with("data", target=["a", "b"]), "`data.target`"),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_hostile_config_is_refused_with_one_paragraph_and_the_fix(tmp_path, capsys, name) -> None:
    content, expected = CONFIGS[name]
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and str(path) in err, err
    assert "Fix" in err and "Traceback" not in err, err
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_aliases_within_the_bound_still_share_a_section(tmp_path) -> None:
    """Anchors are a fair way to reuse a value; only an expansion past the bound is refused."""
    path = tmp_path / "shared.yaml"
    path.write_text(
        "data: {source: seeds.csv, target: status, drop_columns: [id, note]}\n"
        "method: {name: marginals}\n"
        "generate: {num_rows: &n 12, batch_size: *n}\n"
        "filter: {drop_duplicates: true}\n"
        "run: {seed: 3}\n"
        "evaluate: {metrics: [quality], mle_seeds: [0]}\n"
    )
    config = load_config(path)
    assert config.generate.num_rows == config.generate.batch_size == 12
    assert config.data.drop_columns == ["id", "note"] and config.run.seed == 3


def test_run_names_and_ids_cannot_leave_the_runs_directory(tmp_path, capsys) -> None:
    path = tmp_path / "escape.yaml"
    path.write_text(_good_with("run", name="../../etc/evil"))
    runs = tmp_path / "runs"
    run_id = run_id_for(load_config(path))
    assert (runs / run_id).resolve().parent == runs.resolve()
    assert checked_run_id(run_id) == run_id  # the computed id can be resumed by name
    for given in ("../outside", "/abs", ".hidden", "a/b", ""):
        with pytest.raises(SynthloomError, match="is not allowed.*Fix"):
            checked_run_id(given)
    assert main(["resume", "../../etc", "--data-dir", str(tmp_path)]) == 2
    assert "is not allowed" in capsys.readouterr().err
