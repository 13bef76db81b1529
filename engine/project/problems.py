"""Pydantic's validation errors in the marketer's words.

`validation_problems` turns one `ValidationError` of a model read from a YAML file
into one `Problem` per place, with the file, the line and the key path, what was
expected and what was found, and a "did you mean" hint for a misspelled key. It
reads no file: the `YamlDoc` already holds the data and where each key was written.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import Problem
from .yamlfile import KeyPath, YamlDoc, describe, dotted

# Words a marketer may write for a trigger, and the trigger that does it.
_TRIGGER_WORDS = {
    "birth": "date with field: birthday",
    "anniversar": "date with field: first_order",
    "signup": "date with field: signup",
    "win_back": "inactive",
    "winback": "inactive",
    "lapse": "inactive",
    "cart": "checkout_abandoned",
    "newsletter": "broadcast",
    "restock": "back_in_stock",
    "new_product": "product_added",
    "replenish": "after_purchase",
    "review": "after_purchase",
    "every": "schedule",
}


def validation_problems(
    exc: ValidationError, doc: YamlDoc, model: type[BaseModel]
) -> list[Problem]:
    """Turn pydantic's errors into one file:line: key: message problem per place.

    The alternatives of a union become one "expected A or B" line, and a key
    reported missing is left out when a misspelled key beside it is the hint.
    """
    by_path: dict[KeyPath, list[Any]] = {}
    for error in exc.errors(include_url=False):
        path = _data_path(doc.data, error["loc"])
        if error["type"] == "union_tag_invalid":
            path = (*path, str(error.get("ctx", {}).get("discriminator", "type")).strip("'"))
        elif error["type"] == "unknown_language":
            path = (*path, error["ctx"]["key"])  # the line of the key, not of the text
        by_path.setdefault(path, []).append(error)
    typos = {
        (*path[:-1], hint)
        for path, errors in by_path.items()
        for error in errors
        if error["type"] == "extra_forbidden"
        for hint in _close(model, path, doc)
    }
    problems = []
    for path, errors in by_path.items():
        if path in typos and all(e["type"] == "missing" for e in errors):
            continue
        for message in _messages(errors, path, doc, model):
            problems.append(Problem(doc.file, doc.line(path), dotted(path), message))
    return problems


def _data_path(data: Any, loc: tuple[Any, ...]) -> KeyPath:
    """The part of pydantic's `loc` that names places in the file (drops union tags)."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            path.append(part)
            node = node[part]
        elif (
            isinstance(node, dict)
            and part not in node
            and isinstance(part, str)
            and part.isidentifier()
            and part == loc[-1]
        ):
            # A missing required key (a discriminator tag in between is stepped over).
            path.append(part)
    return tuple(path)


# What a value of each pydantic error type should have been, in the marketer's words.
_EXPECTED = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "decimal_type": "a number",
    "decimal_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "date_type": "a date like 2026-11-27",
    "date_parsing": "a date like 2026-11-27",
    "date_from_datetime_parsing": "a date like 2026-11-27",
    "date_from_datetime_inexact": "a date like 2026-11-27",
}


def _messages(errors: list[Any], path: KeyPath, doc: YamlDoc, model: type[BaseModel]) -> list[str]:
    kinds = [e["type"] for e in errors]
    if len(errors) > 1 and all(kind in _EXPECTED for kind in kinds):
        wanted = " or ".join(dict.fromkeys(_EXPECTED[kind] for kind in kinds))
        return [f"expected {wanted}, got {describe(errors[0].get('input'))}"]
    return list(dict.fromkeys(_message(e, path, doc, model) for e in errors))


def _close(model: type[BaseModel], path: KeyPath, doc: YamlDoc) -> list[str]:
    """The allowed key that a misspelled key at `path` most likely meant, if any."""
    allowed = _allowed_keys(model, path[:-1], doc)
    return difflib.get_close_matches(str(path[-1]), allowed, n=1) if allowed else []


def _message(error: Any, path: KeyPath, doc: YamlDoc, model: type[BaseModel]) -> str:
    kind = error["type"]
    found = error.get("input")
    if kind == "extra_forbidden":
        close = _close(model, path, doc)
        allowed = _allowed_keys(model, path[:-1], doc)
        hint = (
            f" (did you mean {close[0]!r}?)"
            if close
            else (f" (expected one of: {', '.join(allowed)})" if allowed else "")
        )
        return f"unknown key{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        tags = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        tag = str(ctx.get("tag"))
        close = difflib.get_close_matches(tag, tags, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        for word, meant in _TRIGGER_WORDS.items():
            if word in tag.lower().replace("-", "_") and meant.split()[0] in tags:
                hint = f" (did you mean {meant}?)"
        return (
            f"expected one of {ctx.get('expected_tags', '')}, got {describe(ctx.get('tag'))}{hint}"
        )
    if kind == "union_tag_not_found":
        return "required key 'type' is missing"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {describe(found)}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if message.startswith("Input should be "):
        wanted = message.removeprefix("Input should be ")
        if wanted.startswith(("greater", "less")):
            wanted = f"a number {wanted}"
        return f"expected {wanted}, got {describe(found)}"
    if kind in {"too_short", "too_long", "string_too_short", "string_too_long"}:
        return f"{message[0].lower()}{message[1:]}, got {describe(found)}"
    return message


def _allowed_keys(model: type[BaseModel], path: KeyPath, doc: YamlDoc) -> list[str]:
    """Keys the model accepts at `path`, for 'did you mean' hints."""
    current: Any = model
    node: Any = doc.data
    for part in path:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        node = node.get(part) if isinstance(node, dict) else None
        current = _field_model(current, part, node)
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(f.alias or name for name, f in current.model_fields.items())
    return []


def _field_model(model: Any, key: str, node: Any) -> Any:
    import typing

    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    fields = {f.alias or name: f for name, f in model.model_fields.items()}
    if key not in fields:
        return None
    annotation = fields[key].annotation
    for candidate in _flatten(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            tag = node.get("type") if isinstance(node, dict) else None
            literal = candidate.model_fields.get("type")
            if tag is None or literal is None or tag in typing.get_args(literal.annotation):
                return candidate
    return None


def _flatten(annotation: Any) -> list[Any]:
    import typing

    args = typing.get_args(annotation)
    if not args:
        return [annotation]
    out: list[Any] = []
    for arg in args:
        out.extend(_flatten(arg))
    return out
