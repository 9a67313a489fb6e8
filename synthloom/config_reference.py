"""The config reference page (docs/config_reference.md), rendered from the pydantic models.

Every section of `PipelineConfig` and every method config in its `method` union (found
from the annotation, so a new method appears once it joins the union) becomes a table of
key, type, default, constraints and description. `tests/test_docs.py` regenerates the page
in memory and fails when the file differs. Regenerate with

    .venv/bin/python -m synthloom.config_reference     (or: make docs)
"""

from __future__ import annotations

import inspect
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from synthloom.config import PipelineConfig

REFERENCE_PATH = Path(__file__).resolve().parent.parent / "docs" / "config_reference.md"
REGENERATE_COMMAND = ".venv/bin/python -m synthloom.config_reference"

_HEADER = f"""# Config reference

Generated from the pydantic models in `synthloom/config/` (and the method configs its
`method` union holds) by `{REGENERATE_COMMAND}` (or `make docs`);
do not edit by hand: `tests/test_docs.py` fails when this page and the models disagree.
What the keys are for, with examples, is in [configuration.md](configuration.md).

A config file is a YAML mapping with the sections below. Unknown keys and wrong types are
errors that name the file, the dotted key and what was expected; `synthloom validate FILE
--show` prints a config with every default filled in. "required" means the key has no
default.
"""


def _type_name(annotation: Any) -> str:
    """A readable type: `int | null`, `"a" | "b"`, `list[str]`, `dict[str, int]`."""
    if annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin in (list, dict, tuple, set):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    if origin is typing.Annotated:
        return _type_name(args[0])
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory else field.default
    if isinstance(value, BaseModel):
        return "(section defaults)"
    return f"`{json.dumps(value)}`"


_BOUNDS = ((at.Gt, "gt", ">"), (at.Ge, "ge", ">="), (at.Lt, "lt", "<"), (at.Le, "le", "<="))


def _constraints(field: FieldInfo) -> str:
    parts = []
    for item in field.metadata:
        for kind, attr, symbol in _BOUNDS:
            if isinstance(item, kind):
                parts.append(f"{symbol} {getattr(item, attr)}")
        if isinstance(item, at.MinLen):
            parts.append(f"at least {item.min_length} items")
        if isinstance(item, at.MaxLen):
            parts.append(f"at most {item.max_length} items")
    return ", ".join(parts)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _summary(model: type[BaseModel]) -> str:
    """The first paragraph of a model's own docstring (none inherited from pydantic)."""
    doc = model.__dict__.get("__doc__")
    if not doc:
        return ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def _model_of(annotation: Any) -> type[BaseModel] | None:
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def _rows(model: type[BaseModel], prefix: str) -> tuple[list[str], list[tuple[str, type]]]:
    """Table rows for the model's plain keys, and the nested models to render after it."""
    rows, nested = [], []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        sub = _model_of(field.annotation)
        if sub is not None:
            nested.append((key, sub))
            continue
        rows.append(
            f"| `{key}` | {_cell(_type_name(field.annotation))} | {_default(field)} "
            f"| {_cell(_constraints(field))} | {_cell(field.description or '')} |"
        )
    return rows, nested


def _table(
    title: str, model: type[BaseModel], prefix: str, level: str, note: str | None = None
) -> list[str]:
    """A heading, the model's summary (or `note`), its keys, then its nested sections."""
    rows, nested = _rows(model, prefix)
    out = [f"{level} {title}", ""]
    summary = _summary(model) or note
    if summary:
        out += [summary, ""]
    out += ["| key | type | default | constraints | description |", "|---|---|---|---|---|"]
    out += rows + [""]
    for key, sub in nested:
        out += _table(f"`{key}`", sub, key + ".", level + "#")
    return out


def method_configs() -> list[type[BaseModel]]:
    """The models of PipelineConfig's `method` union, in union order."""
    annotation = PipelineConfig.model_fields["method"].annotation
    return [m for m in typing.get_args(annotation) if _model_of(m) is not None]


def _method_name(model: type[BaseModel]) -> str:
    (name,) = typing.get_args(model.model_fields["name"].annotation)
    return name


def render_config_reference() -> str:
    """The whole page, as markdown."""
    lines = [_HEADER]
    for section, field in PipelineConfig.model_fields.items():
        if section == "method":
            methods = method_configs()
            names = ", ".join(f"`{_method_name(m)}`" for m in methods)
            lines += [
                "## `method`",
                "",
                f"`method.name` picks the generator, one of {names}; the other keys depend "
                "on it. Only the chosen method's keys are allowed.",
                "",
            ]
            for model in methods:
                lines += _table(f"`method.name: {_method_name(model)}`", model, "method.", "###")
            continue
        model = _model_of(field.annotation)
        assert model is not None, f"PipelineConfig.{section} is not a section model"
        required = " (required)" if field.is_required() else ""
        lines += _table(f"`{section}`{required}", model, f"{section}.", "##", field.description)
    return "\n".join(lines).rstrip() + "\n"


def write_config_reference(path: str | Path = REFERENCE_PATH) -> Path:
    path = Path(path)
    path.write_text(render_config_reference(), encoding="utf-8")
    return path


if __name__ == "__main__":
    written = write_config_reference(sys.argv[1] if len(sys.argv) > 1 else REFERENCE_PATH)
    print(f"wrote {written}")
