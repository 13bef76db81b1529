"""Safe YAML reading that remembers where every key was written.

Only plain data is allowed (a `!!python/object` tag is an error), duplicate
keys are errors, and `10:00` stays the text "10:00" instead of YAML 1.1's
sexagesimal 600.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import Problem

KeyPath = tuple[str | int, ...]
# More values than any shop's config has; guards against alias bombs.
MAX_VALUES = 20_000
MAX_DEPTH = 50


# libyaml's parser when PyYAML was built with it: ten times faster than pure Python.
_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """SafeLoader without YAML 1.1 base-60 numbers, and with YAML 1.2 booleans: only
    true and false are booleans, so `on: delivered` is the key "on", not True (a
    boolean setting still takes yes/no/on/off: the models read those words)."""


_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT, _BOOL)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    _INT,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?"
        r"|\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _timestamp(loader: _Loader, node: yaml.ScalarNode) -> Any:
    """A date or time, or a YAML error at its line when it looks like one but is not (2027-13-10)."""
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError as exc:
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.value!r} is not a valid date: {exc}", node.start_mark
        ) from exc


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


@dataclass
class YamlDoc:
    """A parsed file: its data and the line of every key path in it."""

    file: str
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line(self, path: KeyPath) -> int | None:
        """The line of `path`, or of its nearest written ancestor."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


class YamlProblems(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(map(str, problems)))


def read_yaml(path: Path, shown_as: str) -> YamlDoc:
    """Parse `path`; raise YamlProblems naming the file and line for any fault."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise YamlProblems([Problem(shown_as, None, "", f"cannot read the file: {exc}")]) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(data[: exc.start].decode("utf-8", errors="replace"))
        message = (
            f"invalid UTF-8 at column {column}: byte 0x{data[exc.start]:02x} "
            "(save the file as UTF-8)"
        )
        raise YamlProblems([Problem(shown_as, line, "", message)]) from None
    return parse_yaml(text, shown_as)


# What YAML allows in a file (its "printable" set); anything else is refused with its place.
_UNPRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


def _position(before: str) -> tuple[int, int]:
    """The line and column (both from 1) just after the text `before`."""
    lines = before.split("\n")
    return len(lines), len(lines[-1]) + 1


def _check_characters(text: str, shown_as: str) -> None:
    """Refuse a control character (or a lone surrogate) with its line and column.

    The YAML reader reports these with an offset into the text, which no editor shows.
    """
    found = _UNPRINTABLE.search(text)
    if found is not None:
        line, column = _position(text[: found.start()])
        code = f"U+{ord(found.group()):04X}"
        message = f"invalid YAML: column {column}: a control character ({code}) is not allowed"
        raise YamlProblems([Problem(shown_as, line, "", message)])


def parse_yaml(text: str, shown_as: str) -> YamlDoc:
    _check_characters(text, shown_as)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        doc = YamlDoc(shown_as, loader.construct_document(node) if node else None)
        problems: list[Problem] = []
        if node is not None:
            _index(loader, node, (), doc, problems)
    except _TooBig as exc:
        raise YamlProblems([Problem(shown_as, exc.line, "", exc.message)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        reason = " ".join(filter(None, [exc.context, exc.problem])) or str(exc)
        tab = _tab_at(text, mark, reason)
        if tab is not None:
            line, column = tab
            reason = f"a tab at column {column}; YAML is indented with spaces, never tabs"
        elif "could not determine a constructor" in reason:
            reason = f"{reason.split('for the tag')[-1].strip()}: only plain YAML data is allowed"
        raise YamlProblems([Problem(shown_as, line, "", f"invalid YAML: {reason}")]) from exc
    except yaml.YAMLError as exc:
        raise YamlProblems([Problem(shown_as, None, "", f"invalid YAML: {exc}")]) from exc
    finally:
        loader.dispose()
    if problems:
        raise YamlProblems(problems)
    return doc


def _tab_at(text: str, mark: yaml.Mark | None, reason: str) -> tuple[int, int] | None:
    """(line, column) of the tab the parser stumbled on; None when it was something else.

    The parser's own words ("found character that cannot start any token") do
    not say the character is a tab, which looks like spaces in most editors.
    """
    if mark is None:
        return None
    lines = text.split("\n")
    written = lines[mark.line] if mark.line < len(lines) else ""
    at_mark = written[mark.column : mark.column + 1] == "\t"
    if not at_mark and ("tab" not in reason or "\t" not in written):
        return None
    column = mark.column if at_mark else written.index("\t")
    return mark.line + 1, column + 1


class _TooBig(Exception):
    def __init__(self, node: yaml.Node, message: str):
        self.line = node.start_mark.line + 1
        self.message = message


def _index(
    loader: _Loader, root: yaml.Node, path: KeyPath, doc: YamlDoc, problems: list[Problem]
) -> None:
    """Record the line of every key path and find duplicate keys.

    Aliases are followed, so a file of nested aliases (a "billion laughs") or
    one that refers to itself would expand without end: past MAX_VALUES
    values or MAX_DEPTH levels it is refused.
    """
    stack: list[tuple[yaml.Node, KeyPath]] = [(root, path)]
    visited = 0
    while stack:
        node, path = stack.pop()
        visited += 1
        if visited > MAX_VALUES:
            raise _TooBig(
                node, f"the file expands to more than {MAX_VALUES} values (nested aliases?)"
            )
        if len(path) > MAX_DEPTH:
            raise _TooBig(
                node, f"values nested more than {MAX_DEPTH} deep (an alias inside itself?)"
            )
        doc.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            children = []
            for key_node, value_node in node.value:
                key = loader.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if key in seen:
                    dotted = ".".join(map(str, (*path, key)))
                    problems.append(Problem(doc.file, line, dotted, "duplicate key"))
                seen.add(key)
                doc.lines[(*path, key)] = line
                children.append((value_node, (*path, key)))
            stack.extend(reversed(children))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed([(item, (*path, i)) for i, item in enumerate(node.value)]))


def dotted(path: KeyPath) -> str:
    """A key path as a marketer reads it: `trigger.holidays[2]`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe(value: Any) -> str:
    """A value found in a file, for 'expected …, got …' messages."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)
