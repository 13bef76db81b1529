"""What one rendering may spend: time, loop steps, characters built, nesting.

A `Budget` lives for one rendering (in a ContextVar, so every thread and task
has its own, and no signal is needed) and is charged, while the template runs,
from every place where a template can spend time or memory: each loop step and
`range()`, each call (macros, methods), each value a filter, an operator, `~`,
`%` or a buffer builds, and each level of macros, includes and layouts. Going
past a limit raises `TemplateLimit` at once, from inside the template, so the
error names its line.

Memory is bounded by bounding what can be built: no single value (string,
list, output) over `Limits.output` characters of text, at most `Limits.built`
characters built in all, and sizes are checked before the thing is built
(`'x' | center(999999999)` and `'%0999999999d' % 1` are refused without
trying). Numbers are bounded too: `**` and `*` of integers to `power_bits`, and
no integer is made from a Decimal of more than `MAX_DIGITS` digits.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.utils import Namespace
from markupsafe import Markup

MAX_DIGITS = 4300  # as Python's own int/str conversion limit


@dataclass(frozen=True)
class Limits:
    """The limits of one rendering of one part (subject, HTML or text).

    Time, steps, sizes and nesting bound the rendering itself; `inlined` bounds
    the HTML that premailer is given afterwards, for templates whose CSS can only
    be inlined per email (it takes 0.7 s over 58 KB of rows and 18 s over 290 KB).
    """

    output: int = 1_000_000  # characters of the output, and of any one value built
    seconds: float = 2.0  # time, checked at every step, call and value built
    steps: int = 100_000  # loop steps and range() items, all loops together
    depth: int = 40  # macros, includes, imports and layouts nested in each other
    built: int = 10_000_000  # characters built in all (values, buffers, output)
    power_bits: int = 100_000  # the largest integer `**` or `*` may make
    slow_text: int = 100_000  # the input of the slow filters (wordwrap, urlize, title)
    inlined: int = 100_000  # HTML whose CSS is inlined per email (premailer is quadratic)


class TemplateLimit(SecurityError):
    """A rendering went past one of its limits."""


class Budget:
    """What is left of one rendering's limits."""

    __slots__ = ("built", "context", "deadline", "depth", "layouts", "limits", "steps")

    def __init__(self, limits: Limits):
        self.limits = limits
        self.deadline = time.monotonic() + limits.seconds
        self.steps = limits.steps
        self.built = 0
        self.depth = 0
        self.layouts = 0  # {% extends %} levels, counted apart from the includes
        self.context: object = None  # the context of the innermost template rendering

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimit(f"rendering took more than {self.limits.seconds:g} s")

    def step(self, count: int = 1) -> None:
        self.steps -= count
        if self.steps < 0:
            raise TemplateLimit(
                f"the loops would take more than {self.limits.steps:,} steps in all"
            )
        self.tick()

    def charge(self, size: int, what: str = "a value") -> None:
        """Account for `size` characters about to be (or just) built."""
        if size > self.limits.output:
            raise TemplateLimit(
                f"{what} would be {size:,} characters, over the {self.limits.output:,} limit"
            )
        self.built += size
        if self.built > self.limits.built:
            raise TemplateLimit(
                f"the rendering would build more than {self.limits.built:,} characters in all"
            )
        self.tick()

    def fits(self, value: Any, what: str = "a value") -> int:
        """The text size of `value`, refused when over the output limit."""
        size = text_size(value, self.limits.output)
        if size > self.limits.output:
            raise TemplateLimit(
                f"{what} is over {self.limits.output:,} characters as text, the limit"
            )
        return size

    def enter(self) -> None:
        self.depth += 1
        if self.depth > self.limits.depth:
            self.depth -= 1
            raise TemplateLimit(
                f"macros, includes or layouts nest more than {self.limits.depth} deep"
            )
        self.tick()

    def leave(self) -> None:
        self.depth -= 1

    def count(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """`iterable`, each item charged as a loop step."""
        for item in iterable:
            self.steps -= 1
            if self.steps < 0 or time.monotonic() > self.deadline:
                self.step(0)
            yield item


BUDGET: ContextVar[Budget | None] = ContextVar("render_budget", default=None)


# ---------------------------------------------------------------- sizes


def text_size(value: Any, cap: int) -> int:
    """About how many characters `value` is as text (at least that many), counted
    only until `cap` is passed. Strings inside containers count four times: their
    repr or JSON may escape them."""
    if isinstance(value, str):
        return len(value)
    total = 0
    stack = [value]
    while stack and total <= cap:
        item = stack.pop()
        if isinstance(item, str):
            total += 4 * len(item) + 2
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(item)
            stack.extend(item)
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, Namespace):
            stack.append(object.__getattribute__(item, "_Namespace__attrs"))
            total += 12
        elif isinstance(item, (bytes, bytearray)):
            total += 4 * len(item) + 3
        elif isinstance(item, int):
            total += item.bit_length() * 3 // 10 + 1
        elif isinstance(item, Decimal):
            total += len(item.as_tuple().digits) + 8
        else:
            total += 24  # a date, None, a float: short text
    return total


# ---------------------------------------------------------------- numbers


def check_int(value: Any, what: str) -> None:
    """Refuse turning a Decimal of more than MAX_DIGITS digits into an integer
    (Python takes minutes over a Decimal('1E+999999'))."""
    if isinstance(value, Decimal) and value.is_finite() and value.adjusted() > MAX_DIGITS:
        raise TemplateLimit(f"{what}: {value} has too many digits to be made an integer")


def check_binop(limits: Limits, operator: str, left: Any, right: Any) -> None:
    """Refuse `*`, `**`, `+` and `%` that would build something over the limits."""
    budget = BUDGET.get()
    if budget is not None:
        budget.tick()
    if operator == "*":
        for items, times in ((left, right), (right, left)):
            if isinstance(items, (str, list, tuple)) and isinstance(times, int) and times > 0:
                size = text_size(items, limits.output)
                if size * times > limits.output:
                    raise TemplateLimit(
                        f"repeating {len(items):,} items {times:,} times is too much"
                    )
        if (
            isinstance(left, int)
            and isinstance(right, int)
            and left.bit_length() + right.bit_length() > limits.power_bits
        ):
            raise TemplateLimit(f"{left:.3g} * {right:.3g} is too large a number")
    elif operator == "**":
        if (
            isinstance(left, int)
            and isinstance(right, int)
            and right * max(abs(left).bit_length() - 1, 0) > limits.power_bits
        ):
            raise TemplateLimit(f"{left} ** {right} is too large a number")
    elif operator == "+":
        if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            size = text_size(left, limits.output) + text_size(right, limits.output)
            if budget is not None:
                budget.charge(size, "the sum")
            elif size > limits.output:
                raise TemplateLimit(f"the sum would be over {limits.output:,} characters")
    elif operator == "%" and isinstance(left, (str, bytes)):
        size = percent_size(limits, left, right)
        if budget is not None:
            budget.charge(size, "the formatted text")


_PERCENT = re.compile(
    r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([diouxXeEfFgGcrsa%])"
)


def percent_size(limits: Limits, fmt: str | bytes, args: Any) -> int:
    """An upper bound of the length of `fmt % args`, refusing `*` and huge widths."""
    text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    if isinstance(args, Mapping):
        values = list(args.values())
    else:
        values = list(args) if isinstance(args, tuple) else [args]
    size = len(text) + sum(text_size(v, limits.output) for v in values)
    for m in _PERCENT.finditer(text):
        width, precision, kind = m.groups()
        if "*" in (width, precision):
            raise TemplateLimit(f"{m.group(0)!r}: a width or precision from '*' is not allowed")
        for number in (width, precision):
            if number and (len(number) > 9 or int(number) > limits.output):
                raise TemplateLimit(f"{m.group(0)!r}: {int(number):,} is too wide")
            size += int(number or 0)
        if kind in "diouxXc":
            for value in values:
                check_int(value, repr(m.group(0)))
    if size > limits.output:
        raise TemplateLimit(f"the formatted text would be over {limits.output:,} characters")
    return size


_SPEC_NUMBER = re.compile(r"\d+")


def check_format_spec(limits: Limits, spec: str) -> None:
    """Refuse a `str.format` field spec such as `>999999999` or `.999999999f`."""
    for number in _SPEC_NUMBER.findall(spec):
        if len(number) > 9 or int(number) > limits.output:
            raise TemplateLimit(f"format spec {spec!r}: {int(number):,} is too wide")


# ---------------------------------------------------------------- filters


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _line_count(text: str) -> int:
    return text.count("\n") + 1


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], i: int, name: str, default: Any) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _center(limits: Limits, value: Any, args: tuple[Any, ...], kw: Mapping[str, Any]) -> int:
    return max(len(_text(value)), int(_arg(args, kw, 0, "width", 80)))


def _indent(limits: Limits, value: Any, args: tuple[Any, ...], kw: Mapping[str, Any]) -> int:
    width = _arg(args, kw, 0, "width", 4)
    step = len(width) if isinstance(width, str) else int(width)
    text = _text(value)
    return len(text) + step * _line_count(text)


def _wordwrap(limits: Limits, value: Any, args: tuple[Any, ...], kw: Mapping[str, Any]) -> int:
    text = _text(value)
    if len(text) > limits.slow_text:
        raise TemplateLimit(f"wordwrap takes at most {limits.slow_text:,} characters")
    width = max(int(_arg(args, kw, 0, "width", 79)), 1)
    wrap = _arg(args, kw, 2, "wrapstring", None) or "\n"
    spaces = sum(text.count(c) for c in " \t\n\r\f\v-")
    return len(text) + len(wrap) * (len(text) // width + spaces + 1)


def _replace(limits: Limits, value: Any, args: tuple[Any, ...], kw: Mapping[str, Any]) -> int:
    text = _text(value)
    old = _text(_arg(args, kw, 0, "old", ""))
    new = _text(_arg(args, kw, 1, "new", ""))
    count = _arg(args, kw, 2, "count", None)
    times = len(text) + 1 if old == "" else text.count(old)
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    return len(text) + times * len(new)


def _format(limits: Limits, value: Any, args: tuple[Any, ...], kw: Mapping[str, Any]) -> int:
    return percent_size(limits, _text(value), dict(kw) if kw else args)


def _slow(limits: Limits, value: Any, args: tuple[Any, ...], kw: Mapping[str, Any]) -> int:
    text = _text(value)
    if len(text) > limits.slow_text:
        raise TemplateLimit(f"this filter takes at most {limits.slow_text:,} characters")
    extra = sum(len(_text(v)) for v in (*args, *kw.values()) if isinstance(v, str))
    return 4 * len(text) + (len(text) // 4 + 1) * (extra + 64)


def _count_arg(name: str, i: int) -> Callable[..., int]:
    def bound(limits: Limits, value: Any, args: tuple[Any, ...], kw: Mapping[str, Any]) -> int:
        count = _arg(args, kw, i, name, 1)
        if isinstance(count, int) and count > limits.steps:
            raise TemplateLimit(f"{name} {count:,} is over the {limits.steps:,} limit")
        return 0

    return bound


def _to_int(limits: Limits, value: Any, args: tuple[Any, ...], kw: Mapping[str, Any]) -> int:
    check_int(value, "int")
    return 0


def _round(limits: Limits, value: Any, args: tuple[Any, ...], kw: Mapping[str, Any]) -> int:
    if _arg(args, kw, 1, "method", "common") != "common":
        check_int(value, "round")
    return 0


Bound = Callable[[Limits, Any, tuple[Any, ...], Mapping[str, Any]], int]
# What a filter would build, checked before it runs; the others build at most a
# few times what they are given.
FILTER_BOUNDS: dict[str, Bound] = {
    "center": _center,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "replace": _replace,
    "format": _format,
    "urlize": _slow,
    "title": _slow,
    "batch": _count_arg("linecount", 0),
    "slice": _count_arg("slices", 0),
    "int": _to_int,
    "round": _round,
}


def _join(limits: Limits, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> Any:
        budget = BUDGET.get()
        if budget is None:
            return func(eval_ctx, value, d, attribute)
        items = list(value)
        if attribute is None:
            size = sum(text_size(v, limits.output) for v in items)
            budget.charge(size + len(_text(d)) * len(items), "the joined text")
        return func(eval_ctx, items, d, attribute)

    return join


# Values whose text is short or exactly their length: no need to measure them.
_PLAIN = frozenset({str, Markup, int, float, bool, Decimal, date, datetime, type(None)})


def check_value(value: Any, what: str) -> None:
    """Refuse `value` when it is a container too large as text (for filters of our
    own, which make text of their value and are not wrapped by `bounded_filter`)."""
    if type(value) not in _PLAIN:
        budget = BUDGET.get()
        if budget is not None:
            budget.fits(value, what)


# Filters that build nothing from their value's text: a number, an item, an
# iterator, the value itself. They run as they are (a wrapper costs a call).
UNBOUNDED_SAFE = frozenset(
    {"length", "count", "first", "last", "abs", "float", "default", "d", "attr", "random",
     "items", "min", "max", "select", "reject", "selectattr", "rejectattr", "unique"}
)  # fmt: skip


def bounded_filter(limits: Limits, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` (filter `name`) checked against the rendering's budget before and after."""
    if name in UNBOUNDED_SAFE:
        return func
    if name == "join":
        return _join(limits, func)
    bound = FILTER_BOUNDS.get(name)
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = BUDGET.get()
        if budget is None:
            return func(*args, **kwargs)
        count = len(args)
        if count > skip and type(args[skip]) not in _PLAIN:
            budget.fits(args[skip], f"the value given to {name}")
        if count > skip + 1 or kwargs:
            for value in (*args[skip + 1 :], *kwargs.values()):
                if isinstance(value, int) and value > limits.output:
                    raise TemplateLimit(f"{name}: {value:,} is over the {limits.output:,} limit")
                if type(value) not in _PLAIN:
                    budget.fits(value, f"the value given to {name}")
        if bound is not None and count > skip:
            budget.charge(bound(limits, args[skip], args[skip + 1 :], kwargs), f"{name}'s result")
        result = func(*args, **kwargs)
        if isinstance(result, str):
            size = len(result)
            if size > 4096:
                budget.charge(size, f"{name}'s result")
            else:  # a short result: counted, without looking at the clock
                budget.built += size
        return result

    return bounded


# ---------------------------------------------------------------- methods

# Methods of strings (and bytes) a template may call. Those with a check build
# something whose size their arguments choose; the rest build at most a few
# times what they are given. Anything else (translate, maketrans, …) is refused.
_WIDTH = {"center", "ljust", "rjust", "zfill"}
_LINEAR = {
    "capitalize", "casefold", "count", "decode", "encode", "endswith", "find", "index",
    "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier", "islower",
    "isnumeric", "isprintable", "isspace", "istitle", "isupper", "lower", "lstrip",
    "partition", "removeprefix", "removesuffix", "rfind", "rindex", "rpartition",
    "rsplit", "rstrip", "split", "splitlines", "startswith", "strip", "swapcase",
    "title", "upper", "hex", "striptags", "unescape", "escape",
}  # fmt: skip
STRING_METHODS = frozenset(_LINEAR | _WIDTH | {"expandtabs", "join", "replace", "format"})


def check_method(
    limits: Limits, budget: Budget, obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> None:
    """Refuse a call of a string method that would build something over the limits."""
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, (str, bytes, bytearray, int)) or isinstance(owner, bool):
        return
    name = getattr(obj, "__name__", "")
    if isinstance(owner, int):
        if name == "to_bytes":
            raise TemplateLimit("int.to_bytes is not allowed in templates")
        return
    if name not in STRING_METHODS and name != "format_map":
        raise TemplateLimit(f"{type(owner).__name__}.{name}() is not allowed in templates")
    if name in _WIDTH and args:
        width = args[0]
        if isinstance(width, int):
            budget.charge(max(width, len(owner)), f"{name}()")
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        size = size if isinstance(size, int) else 8
        budget.charge(len(owner) * max(size, 1), "expandtabs()")
    elif name == "replace" and len(args) >= 2:
        text, old, new = _text(owner), _text(args[0]), _text(args[1])
        times = len(text) + 1 if old == "" else text.count(old)
        budget.charge(len(text) + times * len(new), "replace()")
    elif name == "join" and args:
        items = args[0]
        if isinstance(items, (list, tuple, str)):
            size = sum(text_size(v, limits.output) for v in items)
            budget.charge(size + len(owner) * len(items), "join()")
        else:
            raise TemplateLimit("str.join() takes a list in templates; use the join filter")
