"""Reliability (issue 20): hostile sources and tables, runaway requests, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cli.main import main
from synthloom.artifacts import read_table, sha256_files
from synthloom.budget import OutputEstimate, check_output_fits
from synthloom.config import config_hash, load_config
from synthloom.errors import ConfigError, DataError
from synthloom.ingest.inference import prepare_seed_table
from synthloom.ingest.sources import load_source, sniff_delimiter, source_files

REPO = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, source: str, name: str = "hostile", **sections) -> Path:
    """A small marginals pipeline config on `source` (sections override the defaults)."""
    config = {
        "data": {"source": source, "target": "status"},
        "method": {"name": "marginals"},
        "generate": {"num_rows": 200, "batch_size": 64},
        "evaluate": {"metrics": ["quality"], "plots": False},
        "tracking": {"enabled": False},
        "run": {"seed": 0, "data_dir": str(tmp_path / "data")},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# ---------------------------------------------------------------- 1. a directory as source


def test_root_directory_as_source_is_refused_before_prefect_starts(tmp_path, capsys) -> None:
    path = write_config(tmp_path, "/")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "data.source is a directory" in err and "save_to_disk" in err and "Fix:" in err
    assert "Traceback" not in err
    assert not (tmp_path / "data" / "prefect").exists()  # nothing started, nothing walked


def test_plain_directory_is_refused_without_listing_below_it(tmp_path, monkeypatch) -> None:
    tree = tmp_path / "tree"
    (tree / "locked").mkdir(parents=True)
    (tree / "notes.txt").write_text("x")
    (tree / "locked").chmod(0)  # walking into it would raise PermissionError
    try:
        monkeypatch.setattr(Path, "rglob", lambda *a, **k: pytest.fail("walked the tree"))
        with pytest.raises(DataError, match=r"data\.source is a directory.*Fix: point"):
            source_files(str(tree))
        with pytest.raises(DataError, match=r"data\.source is a directory"):
            load_source(str(tree))
    finally:
        (tree / "locked").chmod(0o755)


def test_dataset_directory_hashes_its_own_files_only(tmp_path) -> None:
    import datasets

    ds = datasets.Dataset.from_dict({"x": [0.5, 1.5, 2.5], "y": ["a", "b", "a"]})
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(tmp_path / "dd")
    root = tmp_path / "dd"
    files = source_files(str(root))
    names = sorted(str(f.relative_to(root)) for f in files)
    assert "dataset_dict.json" in names
    assert any(n.startswith("train/") and n.endswith(".arrow") for n in names)
    assert any(n.startswith("test/") for n in names)
    first = sha256_files(root, files)

    (root / "unrelated").mkdir()
    (root / "unrelated" / "big.bin").write_bytes(b"\0" * 1000)
    (root / "train" / "elsewhere").symlink_to(tmp_path)  # a link out is not followed
    assert source_files(str(root)) == files
    assert sha256_files(root, source_files(str(root))) == first

    ds.map(lambda r: {"x": r["x"] + 1}).save_to_disk(tmp_path / "dd2" / "train")
    (tmp_path / "dd2" / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    assert sha256_files(tmp_path / "dd2", source_files(str(tmp_path / "dd2"))) != first


def test_hashing_reads_at_most_max_bytes(tmp_path, monkeypatch) -> None:
    import synthloom.artifacts as artifacts

    small, big = tmp_path / "a.bin", tmp_path / "b.bin"
    small.write_bytes(b"1" * 10)
    big.write_bytes(b"2" * 1000)
    read: list[str] = []
    real = artifacts.sha256_file
    monkeypatch.setattr(artifacts, "sha256_file", lambda p: read.append(Path(p).name) or real(p))
    first = sha256_files(tmp_path, [small, big], max_bytes=100)
    assert read == ["a.bin"]  # the big file past the budget is described, not read
    big.write_bytes(b"2" * 1001)
    assert sha256_files(tmp_path, [small, big], max_bytes=100) != first  # its size counts


# ---------------------------------------------------------------- 4. only the target column


def test_table_of_only_the_target_is_refused_at_ingest() -> None:
    df = pd.DataFrame({"status": ["good", "bad"] * 20, "id": range(40)})
    with pytest.raises(DataError, match=r"only column left after data.drop_columns is the target"):
        prepare_seed_table(df, source="t.csv", target="status", drop_columns=["id"])
    with pytest.raises(DataError, match=r"no feature columns.*Fix: add feature columns"):
        prepare_seed_table(df[["status"]], source="t.csv", target="status")
    frame, schema = prepare_seed_table(df[["status"]], source="t.csv", target=None)
    assert schema.task is None and list(frame.columns) == ["status"]


def test_only_target_csv_run_stops_at_ingest_with_the_fix(tmp_path, capsys) -> None:
    csv = tmp_path / "only_target.csv"
    pd.DataFrame({"status": ["good", "bad"] * 30}).to_csv(csv, index=False)
    assert main(["run", str(write_config(tmp_path, str(csv)))]) == 2
    err = capsys.readouterr().err
    assert "no feature columns" in err and "XGBoost" not in err and "Traceback" not in err
    run = next((tmp_path / "data" / "runs").iterdir())
    stages = {
        s["name"]: s["status"] for s in json.loads((run / "summary.json").read_text())["stages"]
    }
    assert stages["ingest"] == "failed" and stages["evaluate"] == "pending"


# ---------------------------------------------------------------- 5. delimiters and BOM


def test_sniff_delimiter_picks_the_consistent_split() -> None:
    assert sniff_delimiter("age;job\n41;x,y\n") == ";"
    assert sniff_delimiter('a,b\n1,"x;y"\n') == ","
    assert sniff_delimiter("a\tb\tc\n1\t2\t3\n") == "\t"
    assert sniff_delimiter("a|b\n1|2\n") == "|"
    assert sniff_delimiter("only\n1\n2\n") == ","  # one column: the default
    assert sniff_delimiter("a;b\n1;2\n3;4\n5", complete=False) == ";"  # cut last record


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_delimited_csv_with_byte_order_mark_is_read_and_recorded(tmp_path, sep) -> None:
    rows = [["age", "job", "income", "target"]] + [
        [str(20 + i), ["smith", "baker"][i % 2], str(1000 + 10 * i), ["yes", "no"][i % 3 == 0]]
        for i in range(30)
    ]
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(sep.join(r) for r in rows).encode("utf-8"))
    raw = load_source(str(path))
    assert list(raw.columns) == ["age", "job", "income", "target"]
    frame, schema = prepare_seed_table(raw, source=str(path), target="target")
    assert schema.extra["csv"] == {"delimiter": sep, "byte_order_mark": True}
    assert schema.column("income").kind.value == "numeric" and frame["age"].iloc[0] == 20.0


def test_comma_csv_is_read_as_before(tmp_path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text('a,b\n1,"x;y"\n2,z\n', encoding="utf-8")
    raw = load_source(str(path))
    assert raw["b"].tolist() == ["x;y", "z"]
    assert raw.attrs["synthloom.csv"] == {"delimiter": ",", "byte_order_mark": False}


# ---------------------------------------------------------------- 6. separators in numbers


def test_thousands_separators_are_numbers_and_recorded(tmp_path) -> None:
    path = tmp_path / "money.csv"
    lines = ["id,amount,price,status"] + [
        f'{i},"{1000 + 7 * i:,}","{12345.6 + i:,.1f}",{["a", "b"][i % 2]}' for i in range(60)
    ]
    path.write_text("\n".join(lines) + '\n60,950,"7.5",a\n', encoding="utf-8")
    frame, schema = prepare_seed_table(load_source(str(path)), source=str(path), target="status")
    assert schema.column("amount").kind.value == "numeric"
    assert frame["amount"].iloc[1] == 1007.0 and frame["amount"].iloc[-1] == 950.0
    assert frame["price"].iloc[0] == pytest.approx(12345.6)
    assert schema.extra["coerced_numbers"]["amount"]["values"] == 60  # 950 had no separator
    assert "thousands" in schema.extra["coerced_numbers"]["price"]["as"]


def test_decimal_commas_in_a_semicolon_file(tmp_path) -> None:
    path = tmp_path / "eu.csv"
    lines = ["pi;big;n;status"] + [f"3,{14 + i};1.{234 + i},5;{i};{'ab'[i % 2]}" for i in range(30)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    frame, schema = prepare_seed_table(load_source(str(path)), source=str(path), target="status")
    assert frame["pi"].iloc[0] == pytest.approx(3.14)
    assert frame["big"].iloc[0] == pytest.approx(1234.5)
    assert frame["n"].tolist() == list(map(float, range(30)))  # plain integers untouched
    assert "decimal comma" in schema.extra["coerced_numbers"]["pi"]["as"]
    assert "n" not in schema.extra["coerced_numbers"]


def test_declared_numeric_reads_separators_and_comma_lists_stay_categorical() -> None:
    df = pd.DataFrame({"v": ["1,007", "2,500,000", "3"] * 10, "tags": ["1,2", "3,4", "5"] * 10})
    frame, schema = prepare_seed_table(
        df, source="t.csv", target=None, column_types={"v": "numeric"}
    )
    assert frame["v"].iloc[:3].tolist() == [1007.0, 2_500_000.0, 3.0]
    assert schema.extra["coerced_numbers"]["v"]["values"] == 20
    assert schema.column("tags").kind.value == "categorical"  # "1,2" is not 1 thousand 2


# ---------------------------------------------------------------- 2. absurd requests


def test_absurd_num_rows_is_refused_by_the_config_with_the_limit_key(tmp_path, capsys) -> None:
    csv = tmp_path / "seed.csv"
    pd.DataFrame({"x": range(40), "status": ["a", "b"] * 20}).to_csv(csv, index=False)
    path = write_config(tmp_path, str(csv), generate={"num_rows": 100_000_000_000_000})
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "100,000,000,000,000" in err and "generate.max_rows" in err and "10,000,000" in err
    assert not (tmp_path / "data").exists()
    raised = ["--set", "generate.max_rows=100000000000000"]
    assert main(["validate", str(path), *raised]) == 0
    same = ["generate.num_rows=200"]
    assert config_hash(load_config(path, same)) == config_hash(
        load_config(path, [*same, "generate.max_rows=999"])  # a limit, not part of the run
    )


def test_output_estimate_and_refusal_name_the_numbers() -> None:
    estimate = OutputEstimate(
        num_rows=10**9,
        bytes_per_row=20.0,
        estimated_bytes=4 * 10**10,
        free_bytes=10**9,
        directory="/d",
    )
    assert not estimate.fits and estimate.max_rows_that_fit == 22_500_000
    with pytest.raises(
        ConfigError,
        match=r"1,000,000,000 rows x 20.0 bytes per row.*"
        r"37.3 GiB.*/d has 953.7 MiB free.*at most 22,500,000",
    ):
        check_output_fits(estimate)


def test_request_that_does_not_fit_the_disk_stops_before_fit(tmp_path, monkeypatch, capsys) -> None:
    import shutil

    import synthloom.budget as budget

    csv = tmp_path / "seed.csv"
    pd.DataFrame({"x": range(40), "status": ["a", "b"] * 20}).to_csv(csv, index=False)
    path = write_config(tmp_path, str(csv), generate={"num_rows": 5_000_000})
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(budget.shutil, "disk_usage", lambda _: usage._replace(free=10**6))
    assert main(["run", str(path), "--run-id", "big"]) == 2
    assert "does not fit on the disk" in capsys.readouterr().err
    run = tmp_path / "data" / "runs" / "big"
    summary = json.loads((run / "summary.json").read_text())
    stages = {s["name"]: s["status"] for s in summary["stages"]}
    assert stages == {
        "ingest": "completed",
        "fit": "pending",
        "generate": "refused",
        "filter": "pending",
        "evaluate": "pending",
    }
    assert summary["estimates"]["generate"]["free_bytes"] == 10**6
    assert summary["error"]["stage"] == "generate" and not (run / "generate").exists()


# ---------------------------------------------------------------- 3. SIGTERM


def test_a_signal_that_prefect_turned_into_another_error_is_still_found() -> None:
    from prefect.exceptions import TerminationSignal

    from tasks.runtime import interruption_signal

    try:
        try:
            raise TerminationSignal(signal.SIGTERM)
        except TerminationSignal:
            raise ValueError("Task run is not set")  # noqa: B904 - what Prefect 3.8 does
    except ValueError as err:
        assert interruption_signal(err) is signal.SIGTERM
    assert interruption_signal(KeyboardInterrupt()) is signal.SIGINT
    assert interruption_signal(RuntimeError("plain")) is None


def test_record_cancellation_marks_the_running_stage(tmp_path) -> None:
    from tasks.recorder import RunRecorder, record_cancellation

    recorder = RunRecorder(tmp_path / "r", "r", {"run": {}}, "hash")
    recorder._record("fit").update(status="running")
    recorder._write()
    summary = record_cancellation(tmp_path / "r", "SIGTERM")
    assert summary["status"] == "cancelled" and summary["signal"] == "SIGTERM"
    assert "SIGTERM" in summary["error"]["message"] and summary["error"]["stage"] == "fit"
    stages = {s["name"]: s["status"] for s in summary["stages"]}
    assert stages["fit"] == "cancelled" and "running" not in stages.values()
    assert recorder.finish("failed")["status"] == "failed"  # this recorder saw no signal
    recorder.cancel("generate", "SIGTERM")
    assert recorder.finish("failed")["status"] == "cancelled"


@pytest.mark.filterwarnings("ignore:Logger 'prefect.flow_runs' attempted:UserWarning")
def test_errors_logged_after_a_stop_signal_lose_their_traceback() -> None:
    """Shards in flight when SIGTERM arrives fail because of it; Prefect logs each with a
    traceback (seen once in a full suite run), which must not bury the cancellation line."""
    import io
    import logging

    from flows.environment import quiet_user_error_tracebacks
    from synthloom.stopping import clear_stop, note_stop

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("prefect.flow_runs")
    logger.addHandler(handler)

    def log_failure(text: str) -> None:
        try:
            raise ValueError(text)
        except ValueError:
            logger.exception("Encountered exception during execution: %r", text)

    try:
        quiet_user_error_tracebacks()
        clear_stop()
        log_failure("a real bug")
        assert "Traceback" in out.getvalue()  # without a signal, a bug keeps its traceback
        out.truncate(0), out.seek(0)
        note_stop(signal.SIGTERM)
        log_failure("Flow run not set")
        assert "Flow run not set" in out.getvalue() and "Traceback" not in out.getvalue()
    finally:
        clear_stop()
        logger.removeHandler(handler)


def _part_files(run_dir: Path) -> int:
    return len(list((run_dir / "shards" / "generate").glob("*/part-*.json")))


def _cli_env() -> dict[str, str]:
    """The environment of a `synthloom` subprocess: unbuffered, its own Prefect home."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PREFECT_HOME", None)
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`synthloom ARGS` in a subprocess (output captured, 400 s at most)."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )


def _assert_same_rows(run_dir: Path, reference_dir: Path) -> None:
    """The generated and the kept rows of two runs are equal."""
    for stage in ("generate", "filter"):
        got, _ = read_table(run_dir / stage / "synthetic.parquet")
        want, _ = read_table(reference_dir / stage / "synthetic.parquet")
        pd.testing.assert_frame_equal(got, want, obj=stage)


def test_sigterm_during_generation_exits_fast_records_cancelled_and_resumes(
    tmp_path, mixed_table
) -> None:
    """A real `synthloom run` in a subprocess, SIGTERM while shards are being written."""
    import psutil

    csv = tmp_path / "seed.csv"
    mixed_table.to_csv(csv, index=False)
    path = write_config(tmp_path, str(csv), generate={"num_rows": 40_000, "batch_size": 100})
    data_dir = tmp_path / "data"
    run_dir = data_dir / "runs" / "sig"
    env = _cli_env()
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "run", str(path), "--run-id", "sig"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 240
        while _part_files(run_dir) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None and _part_files(run_dir) >= 3, (tmp_path / "run.log").read_text()
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children  # the temporary Prefect API server
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        assert time.monotonic() - sent < 10
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = (tmp_path / "run.log").read_text()
    assert rc == 128 + signal.SIGTERM, output
    assert "cancelled by SIGTERM" in output and "synthloom resume sig" in output
    assert "Traceback" not in output  # nor the API server's own, as it is stopped
    _, alive = psutil.wait_procs(children, timeout=2)
    assert not alive, f"orphaned: {[c.cmdline() for c in alive]}"

    summary = json.loads((run_dir / "summary.json").read_text())
    stages = {s["name"]: s["status"] for s in summary["stages"]}
    assert summary["status"] == "cancelled" and summary["signal"] == "SIGTERM"
    assert "SIGTERM" in summary["error"]["message"] and summary["error"]["stage"] == "generate"
    assert stages["generate"] == "cancelled" and "running" not in stages.values()

    resumed = _cli(env, "resume", "sig", "--data-dir", str(data_dir))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = json.loads((run_dir / "summary.json").read_text())
    records = {s["name"]: s for s in after["stages"]}
    assert after["status"] == "completed" and after["error"] is None
    assert records["ingest"]["cached"] and records["fit"]["cached"]
    assert records["generate"]["shards_reused"], "the shards written before SIGTERM were redone"
    assert records["generate"]["rows_out"] == 40_000


# A library swaps in its own SIGTERM handler and swallows the signal, as Prefect's bridge
# sometimes does. (A `try: ... except BaseException: pass` loop would leave a window between
# printing "ready" and entering the `try`, where the signal ends the script: that raced
# under load.) Only the watcher, which reads the wakeup fd, can end this run.
SWALLOWING_RUN = """
import signal, sys, time
from pathlib import Path
from flows.signals import stop_on_signals
from tasks.recorder import RunRecorder

run_dir = Path(sys.argv[1])
recorder = RunRecorder(run_dir, "swallow", {"run": {}}, "hash")
recorder._record("fit").update(status="running")
recorder._write()
with stop_on_signals("swallow", run_dir):
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
"""


def test_watcher_ends_a_run_whose_signal_was_swallowed(tmp_path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SWALLOWING_RUN, str(tmp_path / "r")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
        waited = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read()
    assert rc == 128 + signal.SIGTERM and 4.5 < waited < 15, (rc, waited, output)
    assert "had not stopped 5 s after it" in output
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "cancelled" and summary["signal"] == "SIGTERM"
    assert {s["name"]: s["status"] for s in summary["stages"]}["fit"] == "cancelled"


def test_a_cancelled_run_ends_killed_in_mlflow(tmp_path) -> None:
    from tracking.client import default_tracking_uri, mlflow_at
    from tracking.pipeline import end_status

    (tmp_path / "mlflow").mkdir()
    uri = default_tracking_uri(tmp_path)
    client = mlflow_at(uri).tracking.MlflowClient()
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    runs = {status: client.create_run(experiment).info.run_id for status in ("cancelled", "x")}
    for status, run_id in runs.items():
        end_status(run_id, uri, status)
    assert client.get_run(runs["cancelled"]).info.status == "KILLED"
    assert client.get_run(runs["x"]).info.status == "FAILED"


# ---------------------------------------------------------------- Also: one process per run

HOLDING_RUN = """
import sys, time
from synthloom.runlock import run_lock

with run_lock(sys.argv[1], "busy"):
    print("holding", flush=True)
    time.sleep(120)
"""


def test_second_process_on_the_same_run_is_refused_and_names_the_holder(tmp_path, capsys) -> None:
    from synthloom.runlock import run_lock

    csv = tmp_path / "seed.csv"
    pd.DataFrame({"x": range(40), "status": ["a", "b"] * 20}).to_csv(csv, index=False)
    path = write_config(tmp_path, str(csv))
    run_dir = tmp_path / "data" / "runs" / "busy"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDING_RUN, str(run_dir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        assert main(["run", str(path), "--run-id", "busy"]) == 2
        err = capsys.readouterr().err
        assert f"already running in process {holder.pid}" in err and "--fresh" in err
        assert not (run_dir / "summary.json").exists()  # nothing was touched
    finally:
        holder.kill()  # kill -9: the kernel releases the lock with the process
        holder.wait()
    with run_lock(run_dir, "busy") as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()


# ---------------------------------------------------------------- Also: a full disk


def test_full_disk_in_a_stage_is_a_clear_error_and_keeps_earlier_stages(
    tmp_path, monkeypatch, capsys
) -> None:
    import errno

    import tasks.filter

    csv = tmp_path / "seed.csv"
    pd.DataFrame({"x": range(40), "status": ["a", "b"] * 20}).to_csv(csv, index=False)
    path = write_config(tmp_path, str(csv))

    def disk_full(frame, out, schema=None):  # noqa: ARG001
        Path(out).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(out))

    monkeypatch.setattr(tasks.filter, "write_table", disk_full)
    assert main(["run", str(path), "--run-id", "full"]) == 1
    err = capsys.readouterr().err
    assert "Stage 'filter' ran out of disk space" in err and "synthloom resume full" in err
    assert "Traceback" not in err.split("FAILED")[-1]
    run_dir = tmp_path / "data" / "runs" / "full"
    summary = json.loads((run_dir / "summary.json").read_text())
    stages = {s["name"]: s["status"] for s in summary["stages"]}
    assert stages["generate"] == "completed" and stages["filter"] == "failed"
    assert (run_dir / "generate" / "manifest.json").is_file()  # the previous stage is intact
    assert not (run_dir / "filter").exists() and not list(run_dir.glob(".filter.tmp-*"))


# ---------------------------------------------------------------- Also: kill -9


def test_kill_9_during_generation_resumes_to_the_uninterrupted_result(
    tmp_path, mixed_table
) -> None:
    """SIGKILL cannot be handled: the next start reaps the orphaned API server, resume reuses
    the finished stages and shards, and the output equals an uninterrupted run's."""
    import psutil

    csv = tmp_path / "seed.csv"
    mixed_table.to_csv(csv, index=False)
    path = write_config(tmp_path, str(csv), generate={"num_rows": 20_000, "batch_size": 100})
    data_dir = tmp_path / "data"
    run_dir = data_dir / "runs" / "k9"
    env = _cli_env()
    cli = [sys.executable, "-m", "cli.main"]
    proc = subprocess.Popen(
        [*cli, "run", str(path), "--run-id", "k9"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while _part_files(run_dir) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None and _part_files(run_dir) >= 3
        children = psutil.Process(proc.pid).children(recursive=True)
    finally:
        proc.kill()
        proc.wait()
    shards_before = _part_files(run_dir)

    def run(*args: str) -> subprocess.CompletedProcess:
        done = _cli(env, *args)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr  # nor the API server's at its stop
        return done

    resumed = run("resume", "k9", "--data-dir", str(data_dir))
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, resumed.stdout  # the orphaned Prefect server was stopped
    records = {s["name"]: s for s in json.loads((run_dir / "summary.json").read_text())["stages"]}
    assert records["ingest"]["cached"] and records["fit"]["cached"]
    assert len(records["generate"]["shards_reused"]) >= shards_before
    assert records["generate"]["rows_out"] == 20_000

    run("run", str(path), "--run-id", "ref", "--data-dir", str(tmp_path / "ref"))
    _assert_same_rows(run_dir, tmp_path / "ref" / "runs" / "ref")


# A real SIGKILL at an exact point: the launcher wraps one function so that its n-th call
# kills the process (nothing runs after it: no handler, no finally, no atexit).
KILL_LAUNCHER = """
import importlib, os, signal, sys
module, name, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
target = importlib.import_module(module)
original, calls = getattr(target, name), []
def kill_on_nth_call(*args, **kwargs):
    calls.append(1)
    if len(calls) == nth:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)
setattr(target, name, kill_on_nth_call)
from cli.main import main
sys.exit(main(sys.argv[4:]))
"""


@pytest.mark.parametrize(
    "where",
    [
        # ingest has written its first split file into the staged directory
        pytest.param(("tasks.ingest", "write_table", 2), id="during-ingest"),
        # the MLflow run and its first stage's child run exist, the rest is not logged
        pytest.param(("tracking.pipeline", "_log_history", 1), id="during-mlflow-logging"),
    ],
)
def test_kill_9_at_ingest_or_mlflow_logging_resumes_to_one_clean_run(
    tmp_path, mixed_table, where
) -> None:
    """After the kill, `synthloom resume` completes the run: the rows equal an
    uninterrupted run's, and MLflow holds ONE finished run for it with one child per stage
    (the killed process never wrote the MLflow run id back; resume continues that run)."""
    import mlflow

    from tracking.client import default_tracking_uri

    csv = tmp_path / "seed.csv"
    mixed_table.to_csv(csv, index=False)
    path = write_config(tmp_path, str(csv), tracking={"enabled": True, "experiment": "k9"})
    data_dir = tmp_path / "data"
    run_dir = data_dir / "runs" / "k9"
    env = _cli_env()
    log = tmp_path / "killed.log"
    with log.open("w") as out:  # a file, not a pipe: the orphaned API server keeps a pipe open
        killed = subprocess.Popen(
            [sys.executable, "-c", KILL_LAUNCHER, *map(str, where)]
            + ["run", str(path), "--run-id", "k9"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        assert killed.wait(timeout=400) == -signal.SIGKILL, log.read_text()
    resumed = _cli(env, "resume", "k9", "--data-dir", str(data_dir))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Traceback" not in resumed.stdout + resumed.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert not list(run_dir.glob(".*.tmp-*"))  # no staged directory left behind

    reference = tmp_path / "ref"
    assert main(["run", str(path), "--run-id", "ref", "--data-dir", str(reference)]) == 0
    _assert_same_rows(run_dir, reference / "runs" / "ref")

    client = mlflow.tracking.MlflowClient(tracking_uri=default_tracking_uri(data_dir))
    experiment = client.get_experiment_by_name("k9")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`synthloom.run_id` = 'k9'"
    )
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.run_id for r in parents] == [summary["mlflow_run_id"]]
    assert parents[0].info.status == "FINISHED"
    children = [
        r for r in runs if r.data.tags.get("mlflow.parentRunId") == summary["mlflow_run_id"]
    ]
    stages = sorted(r.data.tags["stage"] for r in children)
    assert stages == sorted(s["name"] for s in summary["stages"])  # one child per stage
    assert all(r.info.status == "FINISHED" for r in children)
