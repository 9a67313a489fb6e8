"""Run a pipeline against `synthloom ui`, find it in both dashboards with headless Chromium,
and save screenshots: docs/screenshots/prefect_flow_run.png and mlflow_run.png.

    .venv/bin/python scripts/dashboard_screenshots.py [--out docs/screenshots] [--set KEY=VALUE ...]

Steps, each the way a user does them: (1) `synthloom ui` on two free ports in a fresh data
directory; (2) `synthloom run CONFIG` with PREFECT_API_URL pointing at that server (MLflow
tracking goes to the same data dir's store the UI shows); (3) Chromium (Debian's `chromium` +
`chromium-driver`, installed with apt-get when missing) opens the Prefect UI, clicks the flow
run by its name on the Runs page and finds one task run per stage on its Task Runs tab;
(4) opens the MLflow UI, clicks the experiment and the run by name and reads the displayed
metric values. tests/test_dashboard_browser.py runs the same `capture` with a smaller run.
Every started process (the UI and its two servers, the browser) is stopped on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "pipeline_configs" / "marginals_credit.yaml"
# ENVIRONMENT.md: without the background-networking flags Chromium's outbound connections
# fail noisily on a closed network.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1440,1100",
)
APT_PACKAGES = ("chromium", "chromium-driver")
UI_START_TIMEOUT_S = 240.0
UI_STOP_TIMEOUT_S = 40.0
PAGE_TIMEOUT_S = 60.0


def ensure_browser() -> tuple[str, str]:
    """Paths of `chromium` and `chromedriver`; installs the Debian packages when missing
    (as root, or with passwordless sudo)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo"):
        prefix = ["sudo", "-n"]
    else:
        raise RuntimeError(
            "chromium/chromedriver are missing and apt-get needs root: "
            f"`sudo apt-get install {' '.join(APT_PACKAGES)}`."
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES],
    ):
        done = subprocess.run(
            prefix + command, env=env, capture_output=True, text=True, timeout=900
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        raise RuntimeError(f"apt-get installed {APT_PACKAGES} but they are not on PATH")
    return chromium, driver


def chromium_driver(profile_dir: Path) -> Any:
    """A Selenium WebDriver for headless Debian Chromium with a fresh profile directory."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    chromium, driver = ensure_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    return webdriver.Chrome(service=DriverService(driver), options=options)


def _free_port() -> int:
    from cli.ui import free_port

    return free_port()


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class RunningUI:
    """A `synthloom ui` process and what it serves."""

    process: subprocess.Popen
    prefect_url: str
    mlflow_url: str
    log_path: Path
    server_pids: list[int] = field(default_factory=list)

    @property
    def prefect_api_url(self) -> str:
        return f"{self.prefect_url}/api"


@contextmanager
def synthloom_ui(data_dir: Path, timeout_s: float = UI_START_TIMEOUT_S) -> Iterator[RunningUI]:
    """`synthloom ui` on free ports; yields once it prints that both dashboards are up.

    On exit: SIGTERM (the UI stops its servers), then SIGKILL of whatever is left, the
    servers' own process groups included, so nothing outlives the block."""
    import psutil

    prefect_port, mlflow_port = _free_port(), _free_port()
    log_path = data_dir.parent / "synthloom-ui.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_HOME", None)  # the UI uses <data_dir>/prefect, as a user's would
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "ui", "--data-dir", str(data_dir)]
            + ["--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port)],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ui = RunningUI(
        process, f"http://127.0.0.1:{prefect_port}", f"http://127.0.0.1:{mlflow_port}", log_path
    )
    try:
        deadline = time.monotonic() + timeout_s
        while "dashboards are up" not in log_path.read_text(errors="replace"):
            ui.server_pids = [p.pid for p in psutil.Process(process.pid).children()]
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"synthloom ui did not come up (exit code {process.poll()}):\n"
                    + log_path.read_text(errors="replace")[-3000:]
                )
            time.sleep(0.5)
        ui.server_pids = [p.pid for p in psutil.Process(process.pid).children()]
        yield ui
    finally:
        _kill_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=UI_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        for pid in ui.server_pids:  # each server leads its own group
            _kill_group(pid, signal.SIGKILL)


def run_pipeline(
    config: Path, overrides: list[str], data_dir: Path, prefect_api_url: str, timeout_s: float
) -> dict[str, Any]:
    """`synthloom run CONFIG --set ...` reporting to the given Prefect server; its summary."""
    from synthloom.config import load_config
    from synthloom.runs import run_id_for

    run_id = run_id_for(load_config(config, overrides))
    sets = [arg for value in overrides for arg in ("--set", value)]
    env = dict(os.environ, PREFECT_API_URL=prefect_api_url, PYTHONUNBUFFERED="1")
    env.pop("PREFECT_HOME", None)
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "run", str(config), "--data-dir", str(data_dir)] + sets,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        start_new_session=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"synthloom run failed ({done.returncode}):\n{done.stdout[-3000:]}")
    summary_path = data_dir / "runs" / run_id / "summary.json"
    return json.loads(summary_path.read_text(encoding="utf-8"))


def _wait(driver: Any, condition: Any, what: str, timeout_s: float = PAGE_TIMEOUT_S) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.3).until(condition)
    except TimeoutException:
        raise AssertionError(
            f"timed out after {timeout_s:.0f} s waiting for {what} on {driver.current_url}"
        ) from None


def _body_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def _click_text(driver: Any, text: str, what: str) -> None:
    """Click the innermost visible element whose whole text is `text`."""
    from selenium.webdriver.common.by import By

    xpath = f"//*[normalize-space(.)='{text}' and not(*[normalize-space(.)='{text}'])]"

    def clickable(d: Any) -> Any:
        shown = [e for e in d.find_elements(By.XPATH, xpath) if e.is_displayed()]
        return shown[0] if shown else False

    _wait(driver, clickable, what).click()


def find_prefect_flow_run(
    driver: Any, prefect_url: str, run_name: str, stages: list[str], screenshot: Path
) -> dict[str, str]:
    """Open the Runs page, click the flow run named `run_name`, and on its Task Runs tab find
    one task run per stage (Prefect names them `<stage>-<3 hex>`). Returns {stage: task run
    name}; saves a screenshot of the run's page (graph + task runs)."""
    from selenium.webdriver.common.by import By

    driver.get(f"{prefect_url}/runs")
    _wait(driver, lambda d: d.find_elements(By.LINK_TEXT, run_name), f"flow run {run_name}")
    driver.find_element(By.LINK_TEXT, run_name).click()
    _wait(driver, lambda d: "/runs/flow-run/" in d.current_url, "the flow run page")
    _wait(driver, lambda d: "Completed" in _body_text(d), "the Completed state")
    _click_text(driver, "Task Runs", "the Task Runs tab")
    patterns = {s: re.compile(rf"^({re.escape(s)}-[0-9a-f]{{3}})$", re.M) for s in stages}

    def all_stages(d: Any) -> dict[str, str] | bool:
        text = _body_text(d)
        found = {s: m.group(1) for s, p in patterns.items() if (m := p.search(text))}
        return found if len(found) == len(stages) else False

    found = _wait(driver, all_stages, f"task runs of stages {stages}")
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(1.5)  # the run graph is a canvas drawn after the data arrives
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(screenshot))
    return found


# Close the MLflow Assistant side panel (it takes a third of the page), then scroll the
# run's metrics table into view, for the screenshot.
_CLOSE_MLFLOW_ASSISTANT = """
const close = document.querySelector(
  'button[data-component-id="mlflow.assistant.chat_panel.close"]');
if (close) close.click();
"""
_SHOW_MLFLOW_METRICS = """
const leaves = [...document.querySelectorAll('body *')].filter(e => e.childElementCount === 0);
const metrics = leaves.find(e => /^Metrics \\(\\d+\\)$/.test(e.textContent.trim()));
if (metrics) metrics.scrollIntoView({block: 'start'});
"""


def find_mlflow_run(
    driver: Any,
    mlflow_url: str,
    experiment: str,
    run_name: str,
    metrics: list[str],
    screenshot: Path,
) -> dict[str, float]:
    """Open the MLflow UI (model-training view), click the experiment and the run by name,
    and read the displayed value of each metric. Returns {metric: value}; saves a screenshot."""
    from selenium.webdriver.common.by import By

    driver.get(f"{mlflow_url}/")
    _click_text(driver, "Model training", "the Model training switch")
    driver.get(f"{mlflow_url}/#/experiments")
    _wait(driver, lambda d: d.find_elements(By.LINK_TEXT, experiment), f"experiment {experiment}")
    driver.find_element(By.LINK_TEXT, experiment).click()
    _wait(driver, lambda d: d.find_elements(By.LINK_TEXT, run_name), f"run {run_name}")
    driver.find_element(By.LINK_TEXT, run_name).click()
    lines_after = {m: re.compile(rf"^{re.escape(m)}\n(\S+)$", re.M) for m in metrics}

    def all_metrics(d: Any) -> dict[str, float] | bool:
        text = _body_text(d)
        found = {m: p.search(text) for m, p in lines_after.items()}
        if not all(found.values()):
            return False
        return {m: float(match.group(1)) for m, match in found.items()}

    values = _wait(driver, all_metrics, f"metrics {metrics}")
    driver.execute_script(_CLOSE_MLFLOW_ASSISTANT)
    time.sleep(0.5)
    driver.execute_script(_SHOW_MLFLOW_METRICS)
    time.sleep(1.0)
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(screenshot))
    return values


def capture(
    out_dir: Path,
    work_dir: Path,
    config: Path = BASELINE,
    overrides: list[str] | None = None,
    metrics: tuple[str, ...] = ("column_shape_error_pct", "dcr_share"),
    run_timeout_s: float = 600.0,
) -> dict[str, Any]:
    """The whole walk-through; returns what was found (for the test to check)."""
    from cli.ui import sigterm_raises_keyboard_interrupt
    from synthloom.config import load_config
    from synthloom.methods.registry import stages_for

    overrides = list(overrides or [])
    cfg = load_config(config, overrides)
    ensure_browser()
    data_dir = work_dir / "data"
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    with sigterm_raises_keyboard_interrupt(), synthloom_ui(data_dir) as ui:
        timings["ui_healthy_s"] = time.perf_counter() - clock
        summary = run_pipeline(config, overrides, data_dir, ui.prefect_api_url, run_timeout_s)
        timings["pipeline_s"] = time.perf_counter() - clock - timings["ui_healthy_s"]
        driver = chromium_driver(work_dir / "chromium-profile")
        try:
            tasks = find_prefect_flow_run(
                driver,
                ui.prefect_url,
                summary["run_id"],
                list(stages_for(cfg.method.name)),
                out_dir / "prefect_flow_run.png",
            )
            shown = find_mlflow_run(
                driver,
                ui.mlflow_url,
                cfg.tracking.experiment,
                summary["run_id"],
                list(metrics),
                out_dir / "mlflow_run.png",
            )
        finally:
            driver.quit()
        timings["browser_s"] = time.perf_counter() - clock - sum(timings.values())
    timings["ui_stop_s"] = time.perf_counter() - clock - sum(timings.values())
    return {
        "summary": summary,
        "task_runs": tasks,
        "mlflow_metrics": shown,
        "ui": ui,
        "timings": {k: round(v, 1) for k, v in timings.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    parser.add_argument("--config", default=str(BASELINE))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="synthloom-screens-") as work:
        started = time.perf_counter()
        found = capture(Path(args.out), Path(work), Path(args.config), args.set)
    print(f"flow run {found['summary']['run_id']}: task runs {found['task_runs']}")
    print(f"MLflow metrics shown: {found['mlflow_metrics']}")
    print(f"timings: {found['timings']}")
    print(
        f"wrote {args.out}/prefect_flow_run.png and mlflow_run.png "
        f"in {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
