"""Reading a pipeline config: `load_config(path, overrides)` reads a YAML file, applies
`--set dotted.key=value` overrides (values parsed as YAML, so `3`, `true`, `[1, 2]` are
typed) and validates; unknown keys and wrong types raise `ConfigError` naming the file, the
dotted key and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from synthloom.config.base import RefusedYaml, config_error, parse_yaml, read_yaml
from synthloom.config.pipeline import PipelineConfig
from synthloom.errors import ConfigError
from synthloom.methods.registry import METHOD_CONFIGS


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def apply_override(raw: dict[str, Any], assignment: str, origin: str) -> None:
    """Apply one `dotted.key=value` to the raw config dict. The value is read as YAML by the
    config files' reader (`read_yaml`: a repeated key or an alias bomb is an error); text
    that is not YAML at all is kept as text, for the validation to name."""
    if "=" not in assignment:
        raise ConfigError(
            f"Config error in {origin}: --set {assignment!r} has no '='. "
            "Fix: write --set dotted.key=value, e.g. --set generate.num_rows=500."
        )
    dotted, text = assignment.split("=", 1)
    keys = [k for k in dotted.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"Config error in {origin}: --set {assignment!r} names no key.")
    try:
        value = read_yaml(text) if text.strip() else None
    except RefusedYaml as exc:
        raise ConfigError(
            f"Config error in {origin}: --set {dotted}: {exc.problem}. {exc.fix}"
        ) from None
    except yaml.YAMLError:  # not YAML at all: the text itself
        value = text
    node = raw
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(
                f"Config error in {origin}: --set {dotted}: `{key}` holds a value, not a "
                "section, so it has no sub-keys. Fix: set the key itself."
            )
        node = child
    node[keys[-1]] = value


def validate_config(raw: Any, origin: str) -> PipelineConfig:
    """Validate a raw mapping; `origin` (file name) goes into every error."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"Config error in {origin}: the file must hold a YAML mapping with the sections "
            "data, method, generate (and optionally filter, evaluate, tracking, run). Fix: "
            "start from a shipped config, e.g. pipeline_configs/quickstart.yaml."
        )
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise config_error(
            "Config error",
            origin,
            exc,
            PipelineConfig,
            "Fix the file or the --set override; `synthloom validate FILE` checks it, and "
            "README.md lists every key.",
            tags=METHOD_CONFIGS,
        ) from None


def load_raw_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict, with clear errors for missing/unparseable files."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"Config error: {path} does not exist. Fix: pass the path of a YAML config, "
            "e.g. pipeline_configs/quickstart.yaml."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            f"Config error in {path}: the file is not UTF-8 text. Fix: pass a YAML config "
            "saved as UTF-8 (e.g. pipeline_configs/quickstart.yaml), not a data or binary file."
        ) from None
    raw = parse_yaml(text, str(path))
    return raw if raw is not None else {}


def load_overridden(
    path: str | Path, overrides: list[str] | tuple[str, ...] = ()
) -> tuple[dict[str, Any], str]:
    """(raw config of a YAML file with `--set dotted.key=value` overrides applied, origin): the
    origin names the file and the overrides, for error messages. Every config kind uses it."""
    raw = load_raw_config(path)
    origin = str(path)
    if overrides:
        origin += " (with --set " + " ".join(overrides) + ")"
        if not isinstance(raw, dict):
            raw = {}
        for assignment in overrides:
            apply_override(raw, assignment, origin)
    return raw, origin


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Load, override and validate a pipeline config. Run name defaults to the file stem."""
    config = validate_config(*load_overridden(path, overrides))
    if config.run.name is None:
        config.run.name = Path(path).stem
    return config
