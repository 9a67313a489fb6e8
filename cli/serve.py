"""`synthloom serve CONFIG --cron EXPR | --interval SECONDS`: run a pipeline on a schedule.

Serves a Prefect deployment of the config's flow (`flows.registry.flow_for(method.name)`)
from this process with Prefect's `flow.serve`: the deployment `<flow name>/<run name>` is
registered with the Prefect server at PREFECT_API_URL, the server creates a flow run at
every tick of the schedule, and this process polls for those runs and executes each in a
subprocess. Every scheduled run gets the same parameters as `synthloom run` would pass:
`{config: the validated config, run_id, data_dir}`, so a scheduled run continues run
`<name>-<config hash>`: stages whose inputs (seed data fingerprint, config, code) did not
change are reused from the cache, changed ones are recomputed.

Schedules need a Prefect server (its scheduler service creates the runs); the ephemeral
API a plain `synthloom run` uses has none, so serve refuses to start without
PREFECT_API_URL. `prefect.yaml` at the repository root defines the same deployments for a
work pool (`prefect deploy`). Ctrl-C or SIGTERM stops serving and pauses the schedule.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from synthloom.config import PipelineConfig
from synthloom.errors import ConfigError

DEFAULT_CONCURRENT_RUNS = 1


def build_schedule(cron: str | None, interval: float | None, timezone: str | None = None):  # noqa: ANN201 - a Prefect schedule (Prefect is imported lazily)
    """A Prefect CronSchedule or IntervalSchedule; ConfigError naming the flag when invalid.

    Exactly one of `cron` (five-field cron, e.g. "0 3 * * *": every day at 03:00) and
    `interval` (seconds > 0) is given; `timezone` is an IANA name (default UTC)."""
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
    from pydantic import ValidationError

    if (cron is None) == (interval is None):
        raise ConfigError(
            "synthloom serve needs exactly one schedule: --cron EXPR (e.g. --cron '0 3 * * *', "
            "daily at 03:00) or --interval SECONDS (e.g. --interval 3600)."
        )
    if interval is not None:
        if not interval > 0:
            raise ConfigError(
                f"--interval must be a positive number of seconds, got {interval!r}. "
                "Fix: e.g. --interval 3600 for hourly runs."
            )
        import datetime as dt

        try:
            return IntervalSchedule(interval=dt.timedelta(seconds=interval), timezone=timezone)
        except ValidationError as err:
            raise ConfigError(_schedule_problem("--timezone", timezone, err)) from None
    try:
        return CronSchedule(cron=cron, timezone=timezone)
    except ValidationError as err:
        field = "--timezone" if _failed_field(err) == "timezone" else "--cron"
        raise ConfigError(
            _schedule_problem(field, timezone if field == "--timezone" else cron, err)
        ) from None


def _failed_field(err: Any) -> str:
    errors = err.errors()
    return str(errors[0]["loc"][0]) if errors and errors[0].get("loc") else ""


def _schedule_problem(flag: str, value: Any, err: Any) -> str:
    reason = "; ".join(e["msg"] for e in err.errors())
    if flag == "--cron":
        fix = (
            "Fix: five fields `minute hour day-of-month month day-of-week`, e.g. "
            "'*/15 * * * *' (every 15 minutes) or '0 3 * * 1-5' (03:00 on weekdays); quote it."
        )
    else:
        fix = "Fix: an IANA time zone name such as UTC or Europe/Berlin."
    return f"{flag} {value!r} is not valid ({reason}). {fix}"


def require_api_server() -> str:
    """The Prefect API URL serve registers with; ConfigError when unset or not answering."""
    import os

    import httpx
    from prefect.settings import PREFECT_API_URL

    url = os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value()  # env, else profile
    start = (
        "Fix: start the dashboard with `synthloom ui` (or `prefect server start --host "
        "127.0.0.1`) and `export PREFECT_API_URL=http://127.0.0.1:4200/api` in this shell."
    )
    if not url:
        raise ConfigError(
            "synthloom serve needs a Prefect server: schedules are created by its scheduler, "
            f"and PREFECT_API_URL is not set. {start}"
        )
    try:
        ok = httpx.get(f"{url.rstrip('/')}/health", timeout=10).status_code == 200
    except httpx.HTTPError:
        ok = False
    if not ok:
        raise ConfigError(f"No Prefect server answers at PREFECT_API_URL={url}. {start}")
    return url


def deployment_parameters(config: PipelineConfig, run_id: str, data_dir: Path) -> dict[str, Any]:
    """What each scheduled run receives: exactly what `synthloom run` passes to the flow."""
    return {"config": config.model_dump(mode="json"), "run_id": run_id, "data_dir": str(data_dir)}


def serve_config(
    config: PipelineConfig,
    *,
    run_id: str,
    data_dir: Path,
    cron: str | None = None,
    interval: float | None = None,
    timezone: str | None = None,
    name: str | None = None,
    limit: int = DEFAULT_CONCURRENT_RUNS,
) -> int:
    """Register the deployment and serve it until interrupted (blocks); returns 0."""
    from flows.environment import configure_runtime

    data_dir = configure_runtime(data_dir)
    schedule = build_schedule(cron, interval, timezone)  # bad flags fail before any network
    api_url = require_api_server()

    from prefect.settings import PREFECT_UI_URL

    from flows.registry import flow_for

    pipeline = flow_for(config.method.name)
    deployment = name or config.run.name or run_id
    ui_url = PREFECT_UI_URL.value() or api_url.rstrip("/").removesuffix("/api")
    when = f"cron {cron!r}" if cron else f"every {interval:g} s"
    print(
        f"synthloom: serving deployment '{pipeline.name}/{deployment}' ({when}"
        f"{', ' + timezone if timezone else ''}) of run {run_id}\n"
        f"  Prefect API: {api_url}\n"
        f"  watch runs:  {ui_url}/runs  (deployments: {ui_url}/deployments)\n"
        f"  run now:     prefect deployment run '{pipeline.name}/{deployment}'\n"
        f"  artifacts:   {data_dir / 'runs' / run_id}\n"
        "  Ctrl-C stops serving and pauses the schedule.",
        flush=True,
    )
    stopped = "synthloom: stopped serving; the deployment's schedule is paused."
    try:  # Ctrl-C returns from serve; SIGTERM exits through Prefect's runner (SystemExit 0)
        _serve(pipeline, deployment, schedule, config, run_id, data_dir, limit)
    except SystemExit:
        pause_deployment(f"{pipeline.name}/{deployment}")  # Prefect's exit skips its pause
        print(stopped, flush=True)
        raise
    pause_deployment(f"{pipeline.name}/{deployment}")
    print(stopped, flush=True)
    return 0


def pause_deployment(full_name: str) -> bool:
    """Pause the schedule of deployment `<flow>/<name>`; False (with a note) if unreachable.

    Prefect's runner pauses its deployments when it stops, but its SIGTERM handler exits
    the process before that finishes (3.8), so serve pauses explicitly (idempotent)."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            client.pause_deployment(client.read_deployment_by_name(full_name).id)
        return True
    except Exception as exc:  # noqa: BLE001 - stopping must not fail on a gone server
        print(f"synthloom: could not pause {full_name} ({type(exc).__name__}: {exc})")
        return False


def _serve(
    pipeline: Any,
    deployment: str,
    schedule: Any,
    config: PipelineConfig,
    run_id: str,
    data_dir: Path,
    limit: int,
) -> None:
    from prefect.types.entrypoint import EntrypointType

    pipeline.serve(
        name=deployment,
        schedules=[schedule],
        parameters=deployment_parameters(config, run_id, data_dir),
        description=f"synthloom {config.method.name} pipeline, run {run_id}",
        tags=["synthloom", config.method.name],
        limit=limit,  # runs of one run id share its artifact directory: never concurrent
        pause_on_shutdown=True,
        print_starting_message=False,
        entrypoint_type=EntrypointType.MODULE_PATH,  # flows/ is installed: any cwd works
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from synthloom.config import load_config
    from synthloom.runs import resolve_data_dir, run_id_for

    config = load_config(args.config, args.set or [])
    if args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}.")
    return serve_config(
        config,
        run_id=args.run_id or run_id_for(config),
        data_dir=resolve_data_dir(args.data_dir, config),
        cron=args.cron,
        interval=args.interval,
        timezone=args.timezone,
        name=args.name,
        limit=args.limit,
    )


def add_serve_command(sub: Any) -> None:
    """Register `synthloom serve` on the CLI's subparsers."""
    serve = sub.add_parser(
        "serve",
        help="run a config on a cron or interval schedule (a served Prefect deployment)",
        description="Serve a Prefect deployment of the config's flow with a schedule. Needs "
        "a Prefect server: run `synthloom ui` and export PREFECT_API_URL first.",
    )
    serve.add_argument("config", help="YAML pipeline config")
    when = serve.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help="cron expression, e.g. '0 3 * * *' (daily at 03:00)")
    when.add_argument("--interval", type=float, metavar="SECONDS", help="run every N seconds")
    serve.add_argument("--timezone", help="IANA time zone of the schedule (default UTC)")
    serve.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key")
    serve.add_argument("--run-id", help="run id every scheduled run continues")
    serve.add_argument("--name", help="deployment name (default: the config's run name)")
    serve.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_CONCURRENT_RUNS,
        help="scheduled runs executed at once (default 1)",
    )
    serve.add_argument("--data-dir", help="where runs/, prefect/ and mlflow/ live")
    serve.set_defaults(func=cmd_serve)


__all__ = ["add_serve_command", "build_schedule", "deployment_parameters", "serve_config"]
