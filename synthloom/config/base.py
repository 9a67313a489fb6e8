"""What every config file shares: the strict base model, the YAML reader, the error describer.

- `StrictConfig`: the base of every config section (pipeline, bench, scaling study, method
  and peer configs). Unknown keys are errors, assignments are validated, and a yes/no value
  is never read as a number (pydantic's lax mode turns `num_rows: true` into 1).
- `parse_yaml(text, origin)`: `yaml.safe_load` (no `!!python` tags) that also refuses a key
  written twice in one mapping (YAML keeps the last silently) and anchors/aliases that
  expand to more than `MAX_YAML_NODES` nodes (an "alias bomb" is a few lines that expand to
  billions). `read_yaml(text)` is the same reader raising yaml's own errors (`RefusedYaml`
  for a document refused on purpose), for callers that treat text that is not YAML apart.
- `config_error(title, origin, exc, root, fix, ...)`: one `ConfigError` for a pydantic
  `ValidationError`, each problem as the dotted key, what is wrong and what was given; an
  unknown key lists the keys allowed where it was found and the closest one.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from synthloom.errors import ConfigError

# Nodes a config may expand to through anchors and aliases; the largest shipped config has
# a few hundred.
MAX_YAML_NODES = 100_000


def _leaf_types(annotation: Any) -> Iterator[Any]:
    """The types an annotation admits, through Optional/Union/Annotated (not containers)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        yield from _leaf_types(get_args(annotation)[0])
    elif origin is Union or origin is types.UnionType:
        for arg in get_args(annotation):
            yield from _leaf_types(arg)
    else:
        yield annotation


class StrictConfig(BaseModel):
    """A config section: unknown keys and yes/no values for numbers are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _no_yes_no_for_a_number(cls, data: Any) -> Any:
        for name, value in data.items() if isinstance(data, dict) else ():
            if isinstance(value, bool) and name in cls.model_fields:
                admitted = set(_leaf_types(cls.model_fields[name].annotation))
                if admitted & {int, float} and not admitted & {bool, Any}:
                    raise ValueError(
                        f"`{name}` is a yes/no value ({str(value).lower()}) where a number "
                        "is expected"
                    )
        return data


class RefusedYaml(yaml.constructor.ConstructorError):
    """A YAML document the config reader refuses on purpose; `fix` says what to do."""

    def __init__(self, problem: str, mark: yaml.Mark, fix: str, context: str | None = None):
        super().__init__(context, mark if context else None, problem, mark)
        self.fix = fix


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that refuses repeated keys and documents that expand past MAX_YAML_NODES."""

    def construct_document(self, node: yaml.Node) -> Any:
        sizes: dict[int, int] = {}

        def expanded(n: yaml.Node) -> int:  # aliases share node objects: count each use
            if id(n) not in sizes:
                sizes[id(n)] = 0  # a recursive alias counts once
                children: Sequence[Any] = n.value if not isinstance(n, yaml.ScalarNode) else []
                parts = (
                    [p for pair in children for p in pair]
                    if isinstance(n, yaml.MappingNode)
                    else list(children)
                )
                sizes[id(n)] = 1 + sum(expanded(p) for p in parts)
            return sizes[id(n)]

        total = expanded(node)
        if total > MAX_YAML_NODES:
            raise RefusedYaml(
                f"its anchors and aliases expand to {total:,} values, more than the "
                f"{MAX_YAML_NODES:,} a config may hold",
                node.start_mark,
                "Fix: write the values out, or share fewer of them through aliases.",
            )
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str) and key in seen:
                raise RefusedYaml(
                    f"the key `{key}` is written twice (lines {seen[key].line + 1} and "
                    f"{key_node.start_mark.line + 1}); YAML would keep the last silently",
                    key_node.start_mark,
                    "Fix: keep one of them (merge the two sections into one).",
                    context="while reading the mapping that starts at line "
                    f"{node.start_mark.line + 1}",
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str) -> Any:
    """The YAML document in `text` (see the module docstring); yaml.YAMLError when it cannot
    be read, `RefusedYaml` (with its `fix`) when it is refused."""
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass


def parse_yaml(text: str, origin: str) -> Any:
    """The YAML document in `text` (see the module docstring); ConfigError naming `origin`,
    the line and column, and the fix when it cannot be read."""
    try:
        return read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        fix = getattr(exc, "fix", "Fix the syntax (indentation with spaces, `key: value`).")
        raise ConfigError(
            f"Config error in {origin}: not valid YAML{where} ({problem}). {fix}"
        ) from None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation admits (through unions, Annotated, dict values)."""
    found = []
    for leaf in _leaf_types(annotation):
        if get_origin(leaf) is dict:
            found += _models_in(get_args(leaf)[1])
        elif isinstance(leaf, type) and issubclass(leaf, BaseModel):
            found.append(leaf)
    return found


def _walk(
    root: type[BaseModel], loc: Sequence[Any], tags: Mapping[str, type[BaseModel]]
) -> tuple[tuple[Any, ...], type[BaseModel] | None]:
    """(loc without pydantic's union tags, the model that owns loc's last key, if any)."""
    shown: list[Any] = []
    model: type[BaseModel] | None = root
    owner: type[BaseModel] | None = root
    keys = list(loc)
    while keys:
        key = keys.pop(0)
        shown.append(key)
        owner = model
        field = model.model_fields.get(str(key)) if model is not None else None
        if field is None:
            model = None
            continue
        annotation = field.annotation
        for leaf in _leaf_types(annotation):
            if get_origin(leaf) is dict and keys:  # the next key is the dict's own key
                shown.append(keys.pop(0))
        models = _models_in(annotation)
        if len(models) > 1 and keys and str(keys[0]) in tags:  # a method union's tag
            model = tags[str(keys.pop(0))]
        else:
            model = models[0] if len(models) == 1 else None
    return tuple(shown), owner


def describe_error(
    error: Mapping[str, Any],
    root: type[BaseModel],
    tags: Mapping[str, type[BaseModel]] | None = None,
    choices: Sequence[str] | None = None,
) -> str:
    """One problem of a ValidationError: `key `a.b`: what is wrong, got X.` (see module doc).
    `tags`: method name -> config model of a tagged union; `choices`: the names to offer
    when the tag (`method.name`) is unknown."""
    loc, owner = _walk(root, error["loc"], tags or {})
    dotted = ".".join(str(k) for k in loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = sorted(owner.model_fields) if owner is not None else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        where = ".".join(str(k) for k in loc[:-1]) or "the top level"
        return f"unknown key `{dotted}`.{hint} Allowed keys under {where}: {', '.join(allowed)}."
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        got = error["input"].get("name") if isinstance(error.get("input"), dict) else None
        names = list(choices or tags or ())
        close = difflib.get_close_matches(str(got), names, n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        return f"key `{dotted}.name`: unknown method {got!r}.{hint} Expected one of: {', '.join(names)}."
    if kind == "missing":
        return f"required key `{dotted}` is missing."
    got = error.get("input")
    message = error["msg"].removeprefix("Value error, ").rstrip(".")
    if isinstance(got, dict):  # a section's own check: its message names the keys
        return f"key `{dotted}`: {message}."
    return f"key `{dotted}`: {message}, got {got!r}."


def config_error(
    title: str,
    origin: str,
    exc: ValidationError,
    root: type[BaseModel],
    fix: str,
    tags: Mapping[str, type[BaseModel]] | None = None,
    choices: Sequence[str] | None = None,
) -> ConfigError:
    """`{title} in {origin}: (1) ... (2) ... {fix}` for every problem of `exc`."""
    listed = " ".join(
        f"({i}) {describe_error(e, root, tags, choices)}" for i, e in enumerate(exc.errors(), 1)
    )
    return ConfigError(f"{title} in {origin}: {listed} {fix}")
