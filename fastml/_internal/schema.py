"""One way to read YAML sections into pydantic objects and to say, in one line, what is wrong with them.

Used by the recipe, the budgets file of ``fastml check`` and scan files alike, so the same mistake reads
the same wherever it is made.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

#: Finds the section class at a key path (``("model",)``) where the annotation alone cannot say (a model
#: kind's section depends on ``model.kind``); returns None to fall back to the annotation.
SectionAt = Callable[[tuple[Any, ...]], "type[BaseModel] | None"]


def one_line(msg: str) -> str:
    """Whitespace (newlines included) folded to single spaces."""
    return " ".join(msg.split())


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr`` cut to ``limit`` characters, so a huge value still gives a readable one-line error."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``: nested mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _section_fields(root: type[BaseModel], parent: tuple[Any, ...], section_at: SectionAt | None) -> str:
    section: Any = root
    for i, part in enumerate(parent):
        found = section_at(parent[: i + 1]) if section_at else None
        section = found or section.model_fields[str(part)].annotation
    return ", ".join(section.model_fields) if isinstance(section, type) else "?"


def pydantic_error_line(path: Path | str, err: ValidationError, root: type[BaseModel], prefix: tuple[Any, ...] = (),
                        section_at: SectionAt | None = None) -> str:
    """The first problem of ``err`` (validating ``root``) as one line naming the file, the key and the expected form.

    ``prefix`` is where ``root`` sits in the file (``("budgets",)`` for a budgets section of a recipe).
    """
    first = err.errors()[0]
    loc = tuple(first["loc"])
    key = ".".join(str(part) for part in (*prefix, *loc)) or "<top level>"
    kind = first["type"]
    if kind == "model_kind":  # the recipe's own error: an unknown model.kind
        return one_line(f"{path}: key '{key}.kind': {first['msg']}")
    if kind == "extra_forbidden":
        parent = ".".join(str(p) for p in (*prefix, *loc[:-1]))
        where = f"in '{parent}'" if parent else "at the top level"
        # one_line: a key is any YAML string, newlines included
        return one_line(f"{path}: unknown key '{key}' {where}; expected one of: "
                        f"{_section_fields(root, loc[:-1], section_at)}")
    if kind == "missing":
        return one_line(f"{path}: missing required key '{key}'")
    msg = first["msg"].removeprefix("Value error, ")
    if not loc and not prefix:  # a whole-document check: its message names the keys itself
        return one_line(f"{path}: {msg}")
    more = f" (and {len(err.errors()) - 1} more problem(s))" if len(err.errors()) > 1 else ""
    # our validators already end their message with "got <value>"; say it once
    got = "" if re.search(r"\bgot\b", msg) else f"; got {short_repr(first.get('input'))}"
    return one_line(f"{path}: key '{key}': {msg}{got}{more}")


__all__ = ["deep_merge", "one_line", "pydantic_error_line", "short_repr"]
