"""The Jinja environment emails render in: an immutable sandbox with enforced limits.

`make_environment` builds it over the templates folder (`templatefiles`: no
file outside it can be loaded); `bounded_render` renders one template under a
fresh `limits.Budget`. The limits are enforced while the template runs, not
checked afterwards: the generated code charges every `{% for %}` step, and
measures every `~`, every list, tuple or dict literal and every buffer joined
(macros, `{% set %}` blocks); calls, `*`, `**`, `+` and `%` are checked by the
sandbox, and Jinja's filters are wrapped to check what they would build.
Nothing relies on signals, so renderings may run in any thread.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from functools import update_wrapper
from itertools import islice
from typing import Any

from jinja2 import Template, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import TemplateSyntaxError
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
    safe_range,
)
from jinja2.utils import Namespace
from markupsafe import Markup

from .limits import (
    BUDGET,
    Budget,
    Limits,
    TemplateLimit,
    bounded_filter,
    check_binop,
    check_format_spec,
    check_method,
)
from .templateerrors import ReportingUndefined
from .templatefiles import FolderLoader


def loop_steps(iterable: Iterable[Any]) -> Iterable[Any]:
    """`iterable`, each item charged as a loop step of the rendering running."""
    budget = BUDGET.get()
    return iterable if budget is None else budget.count(iterable)


# Jinja allows no node types of its own: the iterable of every `{% for %}` is
# wrapped in a call of this name, which the code generator writes as a direct call.
_STEPS = f"{__name__}.loop_steps"


def _is_steps(node: nodes.Node) -> bool:
    return (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.ImportedName)
        and node.node.importname == _STEPS
    )


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator, with loops counted and what `~` and literals build measured.

    A list, tuple or dict literal with values in it is measured as it is made:
    nested in each other, literals are the one way to build something whose
    text grows faster than the template (`[b, b, b]` of `[a, a, a]` …), and a
    value is shown as its text.
    """

    def _measured(self, node: nodes.Expr, frame: Frame, visit: Callable[..., None]) -> None:
        items = node.items  # type: ignore[attr-defined]
        dynamic = getattr(node, "ctx", "load") == "load" and not all(
            isinstance(getattr(i, "value", i), nodes.Const) for i in items
        )
        if dynamic:
            self.write("environment.built(")
        visit(node, frame)
        if dynamic:
            self.write(")")

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        self._measured(node, frame, super().visit_Tuple)

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self._measured(node, frame, super().visit_List)

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self._measured(node, frame, super().visit_Dict)

    def visit_Call(self, node: nodes.Call, frame: Frame, forward_caller: bool = False) -> None:
        if _is_steps(node):
            self.write("environment.loop_steps(")
            self.visit(node.args[0], frame)
            self.write(")")
        else:
            super().visit_Call(node, frame, forward_caller=forward_caller)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        """`a ~ b`, its parts measured before they are joined."""
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"{join}(environment.concat_parts((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")


def _nested(root: Callable[[Context], Any]) -> Callable[[Context], Any]:
    """A template's root render function, counted as one level of nesting.

    A layout renders in its child's own context: it is counted apart, so that
    an include nested too deep is reported at the include, not at a layout.
    """

    def render(context: Context) -> Any:
        budget = BUDGET.get()
        if budget is None:
            yield from root(context)
        elif context is budget.context:
            budget.layouts += 1
            if budget.layouts > budget.limits.depth:
                raise TemplateLimit(
                    f"layouts extend each other more than {budget.limits.depth} deep"
                )
            try:
                yield from root(context)
            finally:
                budget.layouts -= 1
        else:
            budget.enter()
            outer = budget.context, budget.layouts
            budget.context, budget.layouts = context, 0
            try:
                yield from root(context)
            finally:
                budget.leave()
                budget.context, budget.layouts = outer

    return render


class BoundedTemplate(Template):
    """A template whose renderings (includes, imports, layouts too) keep to the limits."""

    environment: Sandbox

    @classmethod
    def _from_namespace(
        cls,
        environment: Any,
        namespace: MutableMapping[str, Any],
        globals: MutableMapping[str, Any],
    ) -> Template:
        template = super()._from_namespace(environment, namespace, globals)
        # `bounded_render` calls the root as it is; a template rendered from inside
        # another (include, import, layout) counts as a level of nesting.
        template.outermost_render_func = template.root_render_func  # type: ignore[attr-defined]
        template.root_render_func = _nested(template.root_render_func)
        return template

    def render(self, *args: Any, **kwargs: Any) -> str:
        return bounded_render(self, dict(*args, **kwargs))


class _Bounded:
    """`str.format` fields checked before they are formatted."""

    limits: Limits
    size = 0

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        budget = BUDGET.get()
        if budget is not None and conversion:
            budget.fits(value, "a format field")
        return super().convert_field(value, conversion)  # type: ignore[misc]

    def format_field(self, value: Any, format_spec: str) -> Any:
        check_format_spec(self.limits, format_spec)
        budget = BUDGET.get()
        if budget is not None:
            budget.fits(value, "a format field")
        out = super().format_field(value, format_spec)  # type: ignore[misc]
        self.size += len(out)
        if self.size > self.limits.output:
            raise TemplateLimit(f"the formatted text is over {self.limits.output:,} characters")
        return out


class _BoundedFormatter(_Bounded, SandboxedFormatter):
    pass


class _BoundedEscapeFormatter(_Bounded, SandboxedEscapeFormatter):
    pass


class Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, where `order.items` means the key, not `dict.items`,
    and where nothing a template does can pass the limits."""

    code_generator_class = _CodeGenerator
    template_class = BoundedTemplate
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, loader: FolderLoader, *, autoescape: bool, limits: Limits):
        super().__init__(
            loader=loader,
            autoescape=autoescape,
            undefined=ReportingUndefined,
            auto_reload=True,
            keep_trailing_newline=False,
        )
        self.limits = limits

    # -- what the generated code calls

    @staticmethod
    def loop_steps(iterable: Iterable[Any]) -> Iterable[Any]:
        return loop_steps(iterable)

    @staticmethod
    def built(value: Any) -> Any:
        """A list, tuple or dict a template wrote, refused when too large as text."""
        budget = BUDGET.get()
        if budget is not None:
            budget.fits(value, "the list")
        return value

    def concat_parts(self, parts: tuple[Any, ...]) -> tuple[Any, ...]:
        budget = BUDGET.get()
        if budget is not None:
            budget.charge(sum(budget.fits(p, "a part of ~") for p in parts), "the joined text")
        return parts

    def concat(self, parts: Iterable[str]) -> str:
        """Joins a buffer (a macro's output, a `{% set %}` block): measured first."""
        budget = BUDGET.get()
        if budget is None:
            return "".join(parts)
        if not isinstance(parts, list):
            parts = list(parts)
        budget.charge(sum(map(len, parts)), "the text built")
        return "".join(parts)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        check_binop(self.limits, operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        budget = BUDGET.get()
        if budget is None:
            return super().call(context, obj, *args, **kwargs)
        check_method(self.limits, budget, obj, args, kwargs)
        if (
            obj is dict
            or obj is Namespace
            or getattr(obj, "catch_varargs", False)
            or getattr(obj, "catch_kwargs", False)
        ):  # dict(…), namespace(…) and a macro's varargs hold what they are given
            budget.fits((args, kwargs), "the arguments")
        if isinstance(obj, LoopContext) and args:  # a recursive loop's loop(children)
            args = (budget.count(args[0]), *args[1:])
        budget.enter()
        try:
            return super().call(context, obj, *args, **kwargs)
        finally:
            budget.leave()

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` and `format_map` with each field checked against the limits."""
        if not isinstance(
            value, (types.MethodType, types.BuiltinMethodType)
        ) or value.__name__ not in ("format", "format_map"):
            return None
        owner = value.__self__
        if not isinstance(owner, str):
            return None
        is_map = value.__name__ == "format_map"

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one mapping")
                kwargs, args = args[0], ()
            formatter: _Bounded
            if isinstance(owner, Markup):
                formatter = _BoundedEscapeFormatter(self, escape=owner.escape)
            else:
                formatter = _BoundedFormatter(self)
            formatter.limits = self.limits
            text = formatter.vformat(owner, args, kwargs)
            budget = BUDGET.get()
            if budget is not None:
                budget.charge(len(text), "the formatted text")
            return type(owner)(text)

        return update_wrapper(wrapper, value)

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A template's globals as a plain dict rather than Jinja's ChainMap over ours.

        Every render copies them (twice), and a dict copies several times faster
        than a ChainMap iterates. The environment's own globals do not change
        after `make_environment`, so nothing a ChainMap would reflect is lost.
        """
        return {**self.globals, **(d or {})}

    # -- compiling

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        for loop in source.find_all(nodes.For):
            if not _is_steps(loop.iter):
                steps = nodes.ImportedName(_STEPS, lineno=loop.iter.lineno)
                loop.iter = nodes.Call(steps, [loop.iter], [], None, None, lineno=loop.iter.lineno)
        return super()._generate(source, name, filename, defer_init)

    def compile(
        self,
        source: str | nodes.Template,
        name: str | None = None,
        filename: str | None = None,
        raw: bool = False,
        defer_init: bool = False,
    ) -> Any:
        """Jinja's compile, under a budget (constant folding runs filters) and with
        nesting too deep for Python's parser reported as a TemplateSyntaxError."""
        token = BUDGET.set(Budget(self.limits)) if BUDGET.get() is None else None
        try:
            return super().compile(source, name, filename, raw, defer_init)  # type: ignore[call-overload]
        except (RecursionError, SyntaxError, MemoryError) as exc:
            line = self._deepest_line(source) if isinstance(source, str) else 1
            error = TemplateSyntaxError(
                "the template nests too deeply to be compiled", line, name, filename
            )
            error.translated = True  # the message alone, as Jinja's own once reported
            raise error from exc
        finally:
            if token is not None:
                BUDGET.reset(token)

    def _deepest_line(self, source: str) -> int:
        """The line where brackets and block tags nest deepest (for the error above)."""
        depth, deepest, line = 0, -1, 1
        try:
            for lineno, kind, value in self.lex(source):
                if kind == "operator" and value in "([{":
                    depth += 1
                elif kind == "operator" and value in ")]}":
                    depth -= 1
                elif kind == "name" and value in _OPENERS:
                    depth += 1
                elif kind == "name" and value.startswith("end"):
                    depth -= 1
                if depth > deepest:
                    deepest, line = depth, lineno
        except (TemplateSyntaxError, RecursionError):
            pass
        return line


_OPENERS = frozenset({"for", "if", "macro", "call", "filter", "block", "with", "autoescape"})


def make_environment(
    loader: FolderLoader, *, autoescape: bool, limits: Limits, own_filters: Mapping[str, Any]
) -> Sandbox:
    """The sandbox over `loader`'s folder, no extra globals, Jinja's filters bounded
    (`limits.bounded_filter`) and `own_filters` added as they are: each of those
    checks its own value (`limits.check_value`) and makes a short text."""
    env = Sandbox(loader, autoescape=autoescape, limits=limits)
    env.filters = {name: bounded_filter(limits, name, f) for name, f in env.filters.items()}
    env.filters.update(own_filters)
    env.globals["range"] = _budgeted_range
    for name in ("lipsum", "cycler", "joiner"):
        env.globals.pop(name, None)
    return env


def _budgeted_range(*args: int) -> range:
    """The sandbox's `range`, no longer than a rendering's loops may be in all.

    Its items are loop steps when a `{% for %}` takes them; a range made into a
    list by a filter is bounded by this length.
    """
    numbers = safe_range(*args)
    budget = BUDGET.get()
    if budget is not None and len(numbers) > budget.steps:
        raise TemplateLimit(
            f"the loops would take more than {budget.limits.steps:,} steps in all "
            f"(range() of {len(numbers):,} items)"
        )
    return numbers


def bounded_render(
    template: Template, context: Mapping[str, Any], limits: Limits | None = None
) -> str:
    """`template.render(context)` under a fresh budget (or the one already running).

    Raises TemplateLimit (a SecurityError) from the line that went past a limit,
    and every other error of the template with its lines, as Jinja's own
    `Template.render` does.
    """
    env = template.environment
    limits = limits or getattr(env, "limits", None) or Limits()
    token = BUDGET.set(Budget(limits)) if BUDGET.get() is None else None
    try:
        root = getattr(template, "outermost_render_func", template.root_render_func)
        top = template.new_context(dict(context))
        budget = BUDGET.get()
        if budget is not None and token is not None:
            budget.context = top
        chunks = root(top)
        parts: list[str] = []
        size = 0
        while block := list(islice(chunks, 64)):
            size += sum(map(len, block))
            if size > limits.output:
                raise TemplateLimit(f"rendered output is over the {limits.output:,} limit")
            parts.extend(block)
        return "".join(parts)
    except Exception:
        env.handle_exception()  # re-raised with the template's lines
        raise  # not reached: handle_exception always raises
    finally:
        if token is not None:
            BUDGET.reset(token)
