"""Read params.yaml into the validated :class:`~batchout.config.schema.Params`; every validation
problem becomes one line that names the key, the bad value and what is allowed (for an unknown key,
the closest valid name).

Usage: ``params = load_params("params.yaml")``; ``parse_params(yaml.safe_load(text))``
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from batchout.config.schema import Params
from batchout.errors import BatchoutError


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Valid keys at ``loc`` (for 'did you mean' on an unknown key)."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        ann = getattr(field, "annotation", None) if field else None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        elif ann is not None and hasattr(ann, "__args__"):
            subs = [a for a in ann.__args__ if isinstance(a, type) and issubclass(a, BaseModel)]
            if not subs:
                continue
            model = subs[-1]
    return list(model.model_fields)


def format_error(err: ValidationError, model: type[BaseModel] = Params, prefix: str = "") -> str:
    """The first validation problem as one line: ``key: problem (got value); allowed``."""
    e = err.errors()[0]
    loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith(("function-", "tuple["))))
    key = prefix + ".".join(str(p) for p in loc)
    if e["type"] == "extra_forbidden":
        names = _field_names(model, loc)
        close = difflib.get_close_matches(str(loc[-1]), names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"{key}: unknown key; {hint}allowed: {', '.join(names)}"
    msg = e["msg"].removeprefix("Value error, ")
    head, sep, rest = msg.partition(": ")
    if sep and " " not in head:  # our own validators name the key relative to where they ran
        return f"{'.'.join(filter(None, [key, head]))}: {rest}"
    got = e.get("input")
    got_s = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{key or '<root>'}: {msg}{got_s}"


def parse_params(doc: Any) -> Params:
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise BatchoutError(f"params: expected a mapping of sections, got {type(doc).__name__}")
    try:
        return Params.model_validate(doc)
    except ValidationError as err:
        raise BatchoutError(format_error(err)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise BatchoutError(f"params: file {str(path)!r} not found; run from the repository root or pass --params")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise BatchoutError(f"params: {path} is not valid YAML{line}") from None
    return parse_params(doc)
