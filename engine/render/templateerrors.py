"""What a template error says to the marketer who wrote the template.

Jinja's own wording is written for programmers: `'dict object' has no
attribute 'nickname'`, an unclosed `{% if %}` reported at the file's last
line, `No filter named 'mony'`. Here each becomes a sentence about the
template: the variable by its full name with what is there instead, the line
where the unclosed tag was opened, the filter that was probably meant.

`MissingValue` is the error a template's undefined values raise
(`ReportingUndefined`, the sandbox's `undefined`): it keeps what the value was
looked up in, so the message can list what is there.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import jinja2.filters
import jinja2.tests
from jinja2 import StrictUndefined, nodes
from jinja2.exceptions import TemplateSyntaxError, UndefinedError
from jinja2.utils import missing

# At most this many names are listed after "has:".
SHOWN_NAMES = 30


class MissingValue(UndefinedError):
    """A template used a value that is not there: `owner[name]`, or the variable `name`
    when `owner` is jinja's `missing`."""

    def __init__(self, message: str | None = None, *, owner: Any = missing, name: Any = None):
        super().__init__(message)
        self.owner = owner
        self.name = name


class ReportingUndefined(StrictUndefined):
    """StrictUndefined whose error is a `MissingValue` (what it was looked up in kept)."""

    __slots__ = ()

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = missing,
        name: str | None = None,
        exc: type[Exception] = UndefinedError,
    ) -> None:
        super().__init__(hint, obj, name, exc)  # type: ignore[arg-type]
        if exc is UndefinedError and hint is None:
            self._undefined_exception = _Raiser(obj, name)  # type: ignore[assignment]


class _Raiser:
    """Called as Jinja calls an exception class: with the message alone."""

    __slots__ = ("name", "owner")

    def __init__(self, owner: Any, name: Any):
        self.owner = owner
        self.name = name

    def __call__(self, message: str) -> MissingValue:
        return MissingValue(message, owner=self.owner, name=self.name)


# ---------------------------------------------------------------- undefined values


def undefined_message(
    exc: MissingValue,
    source: str | None,
    line: int | None,
    parse: Callable[[str], nodes.Template],
    variables: Iterable[str],
) -> str:
    """`'customer.nickname' is undefined; customer has: name, email` (the template's
    `source`, where the error happened at `line`, tells the full name); for a
    variable of the email itself, the email's `variables` are listed."""
    if exc.owner is missing:
        names = [str(v) for v in variables]
        hint = _did_you_mean(str(exc.name), names)
        shown = f"; this email has: {_listed(names)}" if names else ""
        return f"{exc.name!r} is undefined{hint}{shown}"
    path = _written_path(source, line, exc.name, parse) if source else None
    owner_path, full = (path, _joined(path, exc.name)) if path else (None, str(exc.name))
    if isinstance(exc.owner, Mapping):
        keys = [str(k) for k in exc.owner]
        hint = _did_you_mean(str(exc.name), keys)
        if not keys:
            return f"{full!r} is undefined{hint}; {owner_path or 'it'} is empty"
        return f"{full!r} is undefined{hint}; {owner_path or 'it'} has: {_listed(keys)}"
    if exc.owner is None and owner_path:
        return f"{full!r} is undefined: {owner_path} is None in this email"
    if isinstance(exc.owner, (list, tuple)) and isinstance(exc.name, int):
        count = len(exc.owner)
        items = f"{count} item{'' if count == 1 else 's'}"
        return f"{full!r} is undefined; {owner_path or 'the list'} has {items}"
    return f"{full!r} is undefined ({exc.message})"


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_NAMES])
    return shown + (", …" if len(names) > SHOWN_NAMES else "")


def _did_you_mean(name: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _joined(owner: str, name: Any) -> str:
    if isinstance(name, str) and name.isidentifier():
        return f"{owner}.{name}"
    return f"{owner}[{name!r}]"


def _written_path(
    source: str, line: int | None, name: Any, parse: Callable[[str], nodes.Template]
) -> str | None:
    """How the template wrote what `name` was looked up in (`customer`, `order.items[0]`):
    the lookup of `name` on `line`, else the only one in the template."""
    try:
        tree = parse(source)
    except (TemplateSyntaxError, RecursionError):
        return None
    found: list[tuple[int, str]] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            looked_up, base = node.attr, node.node
        elif isinstance(node, nodes.Getitem):
            looked_up, base = _constant(node.arg), node.node
        else:
            continue
        if looked_up == name:
            owner = _path(base)
            if owner is not None:
                found.append((node.lineno, owner))
    on_line = list(dict.fromkeys(owner for at, owner in found if at == line))
    anywhere = list(dict.fromkeys(owner for _, owner in found))
    if len(on_line) >= 1:
        return on_line[0]
    return anywhere[0] if len(anywhere) == 1 else None


def _constant(node: nodes.Node) -> Any:
    return node.value if isinstance(node, nodes.Const) else None


def _path(node: nodes.Node) -> str | None:
    """`customer.address.city` for the expression written so; None for anything else."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        owner = _path(node.node)
        return None if owner is None else _joined(owner, node.attr)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        owner = _path(node.node)
        return None if owner is None else _joined(owner, node.arg.value)
    return None


# ---------------------------------------------------------------- syntax


_INNERMOST = re.compile(r"The innermost block that needs to be closed is '(\w+)'")
_OPENERS = frozenset(
    {"for", "if", "macro", "call", "filter", "block", "with", "autoescape", "set", "trans"}
)


def unclosed_block(
    exc: TemplateSyntaxError, lex: Callable[[str], Iterable[tuple[int, str, str]]]
) -> tuple[str, int] | None:
    """(message, line) for a block tag left open, at the line where it was opened.

    Jinja reports an `{% if %}` without `{% endif %}` at the end of the file, or
    at the `{% endfor %}` that came first; the tag to fix is the one opened.
    """
    innermost = _INNERMOST.search(exc.message or "")
    if innermost is None or exc.source is None:
        return None
    tag = innermost.group(1)
    open_tags = _open_tags(exc.source, lex)
    if not open_tags or open_tags[-1][0] != tag:
        return None
    opened_at = open_tags[-1][1]
    if exc.message and exc.message.startswith("Unexpected end of template"):
        message = f"{{% {tag} %}} opened at line {opened_at} is never closed"
        return f"{message}: end it with {{% end{tag} %}}", opened_at
    return (
        f"{{% {tag} %}} opened at line {opened_at} is not closed before line {exc.lineno}: "
        f"end it with {{% end{tag} %}} first",
        opened_at,
    )


def _open_tags(
    source: str, lex: Callable[[str], Iterable[tuple[int, str, str]]]
) -> list[tuple[str, int]]:
    """The block tags still open (name, line) where the template ends or closes a
    tag other than the innermost open one."""
    stack: list[tuple[str, int]] = []
    tag: list[tuple[int, str, str]] | None = None  # the tokens of the tag being read
    try:
        for token in lex(source):
            if token[1] == "block_begin":
                tag = []
            elif token[1] == "block_end" and tag is not None:
                if not _apply(tag, stack):
                    break
                tag = None
            elif tag is not None and token[1] != "whitespace":
                tag.append(token)
    except TemplateSyntaxError:
        pass
    return stack


def _apply(tag: list[tuple[int, str, str]], stack: list[tuple[str, int]]) -> bool:
    """Open or close a block for one tag; False at an end tag that does not match."""
    if not tag or tag[0][1] != "name":
        return True
    line, _, name = tag[0]
    if name in _OPENERS:
        if name != "set" or not any(kind == "operator" and v == "=" for _, kind, v in tag):
            stack.append((name, line))
    elif name.startswith("end") and name[3:] in _OPENERS:
        if not stack or stack[-1][0] != name[3:]:
            return False
        stack.pop()
    return True


_NO_FILTER = re.compile(r"No (filter|test) named '([^']+)'")
_OUR_FILTERS = ("money", "date", "percent", "number")


def unknown_name(message: str, own_filters: Collection[str] = _OUR_FILTERS) -> str | None:
    """`No filter named 'mony'; did you mean 'money'?` for Jinja's message of an
    unknown filter or test; None for any other message."""
    found = _NO_FILTER.search(message)
    if found is None:
        return None
    kind, name = found.groups()
    known = [*own_filters, *jinja2.filters.FILTERS] if kind == "filter" else [*jinja2.tests.TESTS]
    close = difflib.get_close_matches(name, list(dict.fromkeys(known)), n=1, cutoff=0.8)
    if close:
        return f"No {kind} named {name!r}; did you mean {close[0]!r}?"
    if kind == "filter":
        return f"No filter named {name!r} (the shop's own are {', '.join(own_filters)})"
    return f"No test named {name!r}"
