"""Schedules: `synthloom serve` against a real `prefect server start`, and prefect.yaml.

The integration test starts the server and the serve process the way a user does (their
own process groups), waits for a run the scheduler created to COMPLETE, and stops both by
PID in `finally`, within bounded time.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cli.main import main
from cli.serve import build_schedule, deployment_parameters
from cli.ui import (
    free_port,
    sigterm_raises_keyboard_interrupt,
    start_prefect_server,
    start_process,
    stop_process_groups,
    wait_healthy,
)
from synthloom.config import load_config
from synthloom.errors import ConfigError
from synthloom.runs import run_id_for

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "pipeline_configs" / "marginals_credit.yaml"
# The fastest real run of the marginals baseline: 200 rows, column-shape quality only, no MLflow.
FAST = [
    "generate.num_rows=200",
    "evaluate.metrics=[quality]",
    "evaluate.plots=false",
    "tracking.enabled=false",
]


@pytest.mark.parametrize(
    ("cron", "interval", "timezone", "flag"),
    [
        ("61 * * * *", None, None, "--cron"),
        ("every day", None, None, "--cron"),
        ("0 3 * * *", None, "Mars/Olympus", "--timezone"),
        (None, 0, None, "--interval"),
        (None, -5, None, "--interval"),
        (None, None, None, "exactly one schedule"),
        ("0 3 * * *", 60, None, "exactly one schedule"),
    ],
)
def test_bad_schedules_name_the_flag_and_the_fix(cron, interval, timezone, flag) -> None:
    with pytest.raises(ConfigError) as err:
        build_schedule(cron, interval, timezone)
    assert flag in str(err.value)
    assert "Fix" in str(err.value) or "e.g." in str(err.value)


def test_good_schedules() -> None:
    cron = build_schedule("*/15 * * * 1-5", None, "Europe/Berlin")
    assert (cron.cron, cron.timezone) == ("*/15 * * * 1-5", "Europe/Berlin")
    assert build_schedule(None, 90, None).interval.total_seconds() == 90


def test_serve_cli_errors_exit_2_without_a_server(tmp_path, capsys, monkeypatch) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["serve", str(BASELINE), "--cron", "61 * * * *", *data]) == 2
    assert "--cron '61 * * * *' is not valid" in capsys.readouterr().err

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["serve", str(BASELINE), "--interval", "60", *data]) == 2
    err = capsys.readouterr().err
    assert "PREFECT_API_URL is not set" in err and "synthloom ui" in err

    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    assert main(["serve", str(BASELINE), "--interval", "60", *data]) == 2
    assert "No Prefect server answers" in capsys.readouterr().err


def test_prefect_yaml_deploys_the_configs_with_serve_parameters(tmp_path) -> None:
    """Every prefect.yaml deployment loads, names an existing valid config, has a valid
    schedule, and resolves to the same flow and parameters `synthloom serve` would use."""
    from prefect.flows import load_flow_from_entrypoint

    from flows.scheduled import resolve_config_run

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    pools = set()
    assert {d["name"] for d in spec["deployments"]} >= {"quickstart", "marginals-credit"}
    for deployment in spec["deployments"]:
        flow = load_flow_from_entrypoint(str(REPO / deployment["entrypoint"]))
        assert flow.name == "synthloom-config"
        params = deployment["parameters"]
        assert set(params) <= set(flow.parameters.properties)
        config_path = REPO / params["config_path"]
        config = load_config(config_path, params.get("overrides", []))
        for schedule in deployment["schedules"]:
            build_schedule(schedule["cron"], None, schedule.get("timezone"))
        pools.add(deployment["work_pool"]["name"])

        kwargs = resolve_config_run(str(config_path), data_dir=str(tmp_path))
        assert kwargs == deployment_parameters(config, run_id_for(config), tmp_path.resolve())
    assert pools == {"synthloom-local"}


def test_config_run_applies_overrides_and_reports_bad_keys(tmp_path) -> None:
    from flows.scheduled import resolve_config_run

    kwargs = resolve_config_run(str(BASELINE), ["generate.num_rows=7"], str(tmp_path), "r1")
    assert kwargs["config"]["generate"]["num_rows"] == 7
    assert (kwargs["run_id"], kwargs["data_dir"]) == ("r1", str(tmp_path.resolve()))
    with pytest.raises(ConfigError, match="generate.num_rowz"):
        resolve_config_run(str(BASELINE), ["generate.num_rowz=7"])


def _api(url: str, path: str, body: dict | None = None) -> object:
    import httpx

    if body is None:
        return httpx.get(f"{url}{path}", timeout=10).json()
    return httpx.post(f"{url}{path}", json=body, timeout=10).json()


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@pytest.fixture
def sigterm_cleans_up():  # noqa: ANN201
    """A terminated pytest (e.g. a CI timeout) still runs the test's `finally`."""
    with sigterm_raises_keyboard_interrupt():
        yield


@pytest.mark.integration
@pytest.mark.usefixtures("sigterm_cleans_up")
def test_served_interval_deployment_completes_a_scheduled_run(tmp_path) -> None:
    port = free_port()
    server = start_prefect_server(tmp_path / "server", "127.0.0.1", port)  # own PREFECT_HOME
    api = f"http://127.0.0.1:{port}/api"
    processes = [server.process]
    data_dir = tmp_path / "data"
    serve_log = tmp_path / "serve.log"
    started = time.monotonic()
    try:
        wait_healthy([server], 180)
        print(f"server healthy after {time.monotonic() - started:.0f} s")
        env = dict(os.environ, PREFECT_API_URL=api, PREFECT_RUNNER_POLL_FREQUENCY="2")
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("PREFECT_HOME", None)  # serve uses <data_dir>/prefect, as a user's would
        sets = [arg for value in FAST for arg in ("--set", value)]
        serve = start_process(
            [sys.executable, "-m", "cli.main", "serve", str(BASELINE), "--interval", "5"]
            + ["--data-dir", str(data_dir), *sets],
            env,
            serve_log,
        )
        processes.append(serve)

        # prefect.yaml registers with `prefect deploy` against the same server meanwhile.
        deploy_env = dict(env, PREFECT_HOME=str(tmp_path / "deploy-home"))
        prefect = str(Path(sys.executable).parent / "prefect")
        yaml_digest = hashlib.sha256((REPO / "prefect.yaml").read_bytes()).hexdigest()
        for command in (
            [prefect, "work-pool", "create", "synthloom-local", "--type", "process"],
            [prefect, "--no-prompt", "deploy", "--all"],
        ):
            done = subprocess.run(
                command, cwd=REPO, env=deploy_env, capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert hashlib.sha256((REPO / "prefect.yaml").read_bytes()).hexdigest() == yaml_digest
        print(f"prefect deploy done after {time.monotonic() - started:.0f} s")

        finished: dict = {}
        deadline = time.monotonic() + 240
        while not finished and time.monotonic() < deadline:
            assert serve.poll() is None, f"serve exited:\n{_tail(serve_log)}"
            runs = _api(
                api,
                "/flow_runs/filter",
                {"flow_runs": {"state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED"]}}}},
            )
            for run in runs:
                assert run["state_type"] == "COMPLETED", f"{run['state']}\n{_tail(serve_log)}"
                finished = run
            time.sleep(1)
        assert finished, f"no scheduled run completed in time:\n{_tail(serve_log)}"
        print(f"scheduled run completed after {time.monotonic() - started:.0f} s")

        config = load_config(BASELINE, FAST)
        run_id = run_id_for(config)
        assert finished["auto_scheduled"] is True  # created by the scheduler, not by hand
        assert finished["name"] == run_id
        deployment = _api(api, f"/deployments/{finished['deployment_id']}")
        assert deployment["name"] == "marginals_credit"
        assert deployment["schedules"][0]["schedule"]["interval"] == 5.0
        assert deployment["parameters"]["run_id"] == run_id
        summary = json.loads((data_dir / "runs" / run_id / "summary.json").read_text())
        assert summary["status"] == "completed"
        assert [s["status"] for s in summary["stages"]] == ["completed"] * 5

        deployed = _api(api, "/deployments/filter", {})
        from_yaml = {d["name"]: d for d in deployed if d["work_pool_name"] == "synthloom-local"}
        assert set(from_yaml) == {"quickstart", "marginals-credit", "difflm-credit"}
        assert from_yaml["quickstart"]["parameters"]["config_path"] == (
            "pipeline_configs/quickstart.yaml"
        )

        serve.send_signal(signal.SIGTERM)  # stops like Ctrl-C and pauses the schedule
        assert serve.wait(timeout=60) == 0, _tail(serve_log)
        assert "stopped serving" in _tail(serve_log)
        assert _api(api, f"/deployments/{finished['deployment_id']}")["paused"] is True
    finally:
        stop_process_groups(processes, grace_s=10)
    assert all(p.poll() is not None for p in processes)
    assert time.monotonic() - started < 420
