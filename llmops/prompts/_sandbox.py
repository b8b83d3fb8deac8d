"""The Jinja2 sandbox every prompt template renders in.

Templates come from files anybody on a team can edit, and variable values come from users and
datasets, so rendering is treated as running untrusted code:

- Jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` refuses private attributes
  (``__class__``, ``__globals__``, ...), unsafe callables and in-place mutation of lists and dicts.
- The loader refuses every name: ``{% include %}``, ``{% import %}`` and ``{% extends %}``
  cannot read files.
- ``namespace`` is removed, so no state survives a loop iteration; ``lipsum`` and ``random`` are
  removed because a prompt must render the same way every time.
- Size: ``*``, ``**``, ``+``, ``%`` and ``~`` (concatenation) are intercepted, as are calls and
  filters, so no single operation can build a value larger than the output limit; integer arguments
  above the limit (``"x"|center(10**9)``), format strings whose widths add up past it (nested
  ``{0:{1}}`` widths and ``%*d`` are refused), and the string methods and filters that multiply
  their input (``join``, ``translate``, ``expandtabs``, ``indent``, ``replace``) are checked before
  any allocation, counting through nested lists.
- Integers: ``*`` and ``**`` refuse to build integers past 10,000 bits before computing them
  (big-integer arithmetic runs in C, where the watchdog cannot interrupt it).
- Time: the render runs under a deadline; a watchdog interrupts pure-Python work (nested loops) that
  runs past it.

Values are data: they are passed to the compiled template as objects and are never compiled
themselves, so a value containing ``{{ x }}`` is emitted literally.
"""

from __future__ import annotations

import ctypes
import functools
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from jinja2 import BaseLoader, Environment, StrictUndefined, Template, meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import (
    SecurityError,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmops.errors import PromptRenderError, TemplateLimitError, TemplateSecurityError

__all__ = ["RenderLimits", "compile_template", "render_template", "template_variables"]

MAX_TEMPLATE_CHARS = 100_000
"""Longest template source accepted; longer prompts belong in variables, not templates."""

ALLOCATION_FACTOR = 20
"""A render may build at most this many times its output limit in all (intermediate values
included), whatever it keeps."""

MAX_INT_BITS = 10_000
"""Largest integer (in bits, about 3,000 digits) template arithmetic may build: big-integer work
runs in C where no watchdog can interrupt it, so the operands are checked before it starts."""

_PERCENT_FIELD = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]")
_SPEC_NUMBERS = re.compile(r"\d+")


class RenderLimits:
    """Limits applied to one render.

    Args:
        max_output_chars: Longest text one template may produce, and largest value any single
            operation inside it may build.
        timeout_s: Wall-clock budget for compiling and rendering one template.
    """

    __slots__ = ("max_output_chars", "timeout_s")

    def __init__(self, *, max_output_chars: int = 1_000_000, timeout_s: float = 2.0) -> None:
        if max_output_chars < 1 or timeout_s <= 0:
            raise ValueError("max_output_chars and timeout_s must be positive")
        self.max_output_chars = max_output_chars
        self.timeout_s = timeout_s


DEFAULT_LIMITS = RenderLimits()


class _RenderTimeout(BaseException):
    """Raised in the rendering thread by the watchdog (a BaseException: nothing may catch it)."""


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple | dict | set) else 0


def _deep_size(value: Any, limit: int) -> int:
    """Characters and items inside ``value``, counted through nested containers; stops
    counting once past ``limit`` (so it costs at most ``limit`` steps)."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, dict):
            total += len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += len(item)
            stack.extend(item)
        else:
            total += 1
    return total


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _format_size(fmt: str) -> int:
    """Characters a ``str.format`` string may produce from its own text and field widths.

    Raises:
        TemplateLimitError: A field's spec holds a nested field (``{0:{1}}``): its width would
            come from a value, which cannot be checked before formatting.
    """
    import string

    total = 0
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return len(fmt)  # malformed: str.format raises its own error
    for literal, _field, spec, _conversion in parsed:
        total += len(literal)
        if spec and "{" in spec:
            raise TemplateLimitError(
                "format specs with nested fields ('{0:{1}}') are not allowed in templates",
                hint="write the width into the format string",
            )
        total += sum(int(n) for n in _SPEC_NUMBERS.findall(spec or "")[:2])
    return total


def _percent_size(fmt: str) -> int:
    """As :func:`_format_size` for ``%``-formatting; ``*`` widths are refused."""
    total = len(fmt)
    for match in _PERCENT_FIELD.finditer(fmt):
        for part in match.groups():
            if part == "*":
                raise TemplateLimitError(
                    "'*' widths in %-formats are not allowed in templates",
                    hint="write the width into the format string",
                )
            if part:
                total += int(part)
    return total


class _GuardedCodeGenerator(CodeGenerator):
    """Routes ``~`` through :meth:`_Sandbox.guarded_concat` so chained concatenation is capped."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.guarded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _NoLoader(BaseLoader):
    """Refuses every name, so include/import/extends can never read a file."""

    def get_source(self, environment: Environment, template: str) -> tuple[str, str | None, None]:
        raise TemplateNotFound(template)


class _Sandbox(ImmutableSandboxedEnvironment):
    code_generator_class = _GuardedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%", "//"})

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            auto_reload=False,
            cache_size=0,
            loader=_NoLoader(),
        )
        for unsafe_global in ("namespace", "lipsum", "cycler", "joiner"):
            self.globals.pop(unsafe_global, None)
        self.filters.pop("random", None)
        self.filters = {name: self._guard_filter(name, fn) for name, fn in self.filters.items()}
        self.limit = DEFAULT_LIMITS.max_output_chars
        self.spent = 0

    # -- size guards -------------------------------------------------------------------------

    def _check_args(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > self.limit:
                raise TemplateLimitError(
                    f"template argument {arg} exceeds the limit of {self.limit}",
                    hint="use smaller numbers in the template",
                )

    def _check_result(self, value: Any) -> Any:
        size = _size(value)
        if size > self.limit:
            raise TemplateLimitError(
                f"template built a value of {size} items, over the limit of {self.limit}",
                hint="shorten the template or the values passed to it",
            )
        # What a list costs is what is in it (split() of long words), counted only up to
        # the budget left.
        deep = _deep_size(value, ALLOCATION_FACTOR * self.limit) if size else 0
        self._spend(deep)
        return value

    def _spend(self, size: int) -> None:
        """Count what a render builds in all: many values each under the limit (a list literal
        of big strings) must not add up to gigabytes."""
        self.spent += size
        if self.spent > ALLOCATION_FACTOR * self.limit:
            raise TemplateLimitError(
                f"template built more than {ALLOCATION_FACTOR * self.limit} characters and items"
                " in all",
                hint="shorten the template or the values passed to it",
            )

    def _check_format(self, fmt: Any, *, style: str = "{}") -> None:
        if not isinstance(fmt, str):
            return
        size = _format_size(fmt) if style == "{}" else _percent_size(fmt)
        if size > self.limit:
            raise TemplateLimitError(
                f"format string could produce {size} characters, over the limit of {self.limit}",
                hint="use smaller widths and precisions",
            )

    def _refuse(self, what: str, size: int) -> None:
        if size > self.limit:
            raise TemplateLimitError(
                f"{what} would build about {size} characters, over the limit of {self.limit}",
                hint="shorten the template or the values passed to it",
            )

    def _check_join(self, sep: Any, items: Any) -> None:
        if isinstance(items, list | tuple | set | frozenset | dict):
            n = len(items)
            self._refuse("join", len(str(sep)) * max(n - 1, 0) + _deep_size(items, self.limit))

    def _check_method(self, name: str, s: Any, args: tuple[Any, ...], kwargs: Any) -> None:
        """String methods whose result can be far larger than their inputs."""
        if not isinstance(s, str):
            return
        if name == "expandtabs":
            size = args[0] if args else kwargs.get("tabsize", 8)
            if _is_int(size):
                self._refuse("expandtabs", len(s) + s.count("\t") * max(size, 0))
        elif name == "translate" and args and isinstance(args[0], Mapping):
            longest = max((_size(v) for v in args[0].values()), default=1)
            self._refuse("translate", len(s) * max(longest, 1))
        elif name == "join" and args:
            self._check_join(s, args[0])
        elif name in ("format", "format_map"):
            self._check_format(s)

    def _check_filter(self, name: str, args: tuple[Any, ...], kwargs: Any) -> None:
        """Filters whose result can be far larger than their inputs."""
        plain = [a for a in args if not _is_context(a)]
        if name == "format" and plain:
            self._check_format(plain[0], style="%")
        elif name == "replace" and len(plain) >= 3:
            self._check_replace(plain[0], plain[1], plain[2])
        elif name == "join" and plain:
            sep = plain[1] if len(plain) > 1 else kwargs.get("d", "")
            self._check_join(sep, plain[0])
        elif name == "indent" and plain and isinstance(plain[0], str):
            width = plain[1] if len(plain) > 1 else kwargs.get("width", 4)
            pad = len(width) if isinstance(width, str) else width if _is_int(width) else 0
            self._refuse("indent", len(plain[0]) + (plain[0].count("\n") + 1) * max(pad, 0))
        elif name == "sum" and not isinstance(kwargs.get("start", 0), int | float):
            # Adding lists or strings one at a time is quadratic work in C (no watchdog).
            raise TemplateLimitError(
                "'sum' adds numbers only here", hint="use join for strings, or a loop for lists"
            )
        elif name in ("string", "tojson", "pprint", "list", "join") and plain:
            self._refuse(f"{name!r}", _deep_size(plain[0], self.limit))

    def _guard_filter(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            self._check_args(args, kwargs)
            self._check_filter(name, args, kwargs)
            result = fn(*args, **kwargs)
            if isinstance(result, Iterator) and not isinstance(result, str):
                # Lazy results (map, select, batch ...) are sized as they are consumed, so
                # list/join/sort over them cannot collect more than the limit.
                return self._bounded(name, result)
            return self._check_result(result)

        return guarded

    def _bounded(self, name: str, items: Iterator[Any]) -> Iterator[Any]:
        total = 0
        for item in items:
            total += max(_deep_size(item, self.limit), 1)
            if total > self.limit:
                raise TemplateLimitError(
                    f"{name!r} produced more than {self.limit} characters and items",
                    hint="shorten the template or the values passed to it",
                )
            yield item

    def _check_replace(self, s: Any, old: Any, new: Any) -> None:
        if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
            count = s.count(old) if old else len(s) + 1
            if len(s) + count * len(new) > self.limit:
                raise TemplateLimitError(
                    f"replace would build a string over the limit of {self.limit} characters",
                    hint="shorten the template or the values passed to it",
                )

    def guarded_concat(self, parts: tuple[Any, ...]) -> str:
        texts = [str(part) for part in parts]
        total = sum(len(text) for text in texts)
        if total > self.limit:
            raise TemplateLimitError(
                f"'~' would build a string of {total} characters, over the limit of {self.limit}",
                hint="shorten the template or the values passed to it",
            )
        self._spend(total)
        return "".join(texts)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > 64:
                raise TemplateLimitError(f"exponent {right} is too large", hint="use at most 64")
            if _is_int(left) and _is_int(right) and left.bit_length() * right > MAX_INT_BITS:
                raise TemplateLimitError(
                    f"'**' would build an integer of about {left.bit_length() * right} bits,"
                    f" over the limit of {MAX_INT_BITS}",
                    hint="use smaller numbers in the template",
                )
        elif operator == "*":
            bits = left.bit_length() + right.bit_length() if _is_int(left) and _is_int(right) else 0
            if bits > MAX_INT_BITS:
                raise TemplateLimitError(
                    f"'*' would build an integer over the limit of {MAX_INT_BITS} bits",
                    hint="use smaller numbers in the template",
                )
            for seq, count in ((left, right), (right, left)):
                if _size(seq) and _is_int(count):
                    self._refuse("'*'", _deep_size(seq, self.limit) * count)
        elif operator == "+":
            if _size(left) + _size(right) > self.limit:
                raise TemplateLimitError(
                    f"'+' would build a value over the limit of {self.limit} items",
                    hint="shorten the template or the values passed to it",
                )
        elif operator == "%":
            self._check_format(left, style="%")
            values = right if isinstance(right, tuple) else (right,)
            self._check_args(values, {})
        return self._check_result(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __self._check_args(args, kwargs)
        name = getattr(__obj, "__name__", "")
        bound_to = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        __self._check_method(name, bound_to, args, kwargs)
        if name == "replace" and len(args) >= 2:
            __self._check_replace(bound_to, args[0], args[1])
        return __self._check_result(super().call(__context, __obj, *args, **kwargs))


def _is_context(value: Any) -> bool:
    from jinja2.nodes import EvalContext

    return isinstance(value, EvalContext | Environment | Context)


_LOCAL = threading.local()


def _env() -> _Sandbox:
    # One environment per thread: the size limit is per render and Jinja environments are not
    # meant to be mutated while other threads render with them.
    env: _Sandbox | None = getattr(_LOCAL, "env", None)
    if env is None:
        env = _Sandbox()
        _LOCAL.env = env
    return env


class _Watchdog:
    """One daemon thread that interrupts renders running past their deadline.

    A thread per render would cost a quarter of a millisecond; registering with this one costs a
    few microseconds. Only pure-Python work can be interrupted, which is why the size guards above
    stop every large C-level allocation before it starts.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active: dict[int, tuple[int, float]] = {}
        self._next_token = 0
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for token, (thread_id, deadline) in list(self._active.items()):
                    if deadline <= now:
                        del self._active[token]
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(
                            ctypes.c_ulong(thread_id), ctypes.py_object(_RenderTimeout)
                        )
                soonest = min((d for _, d in self._active.values()), default=None)
                self._cond.wait(None if soonest is None else max(soonest - now, 0.001))

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Interrupt the current thread with :class:`_RenderTimeout` past ``seconds``."""
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="llmops-render-watchdog")
                self._thread.daemon = True
                self._thread.start()
            token = self._next_token
            self._next_token += 1
            self._active[token] = (threading.get_ident(), time.monotonic() + seconds)
            self._cond.notify()
        try:
            yield
        finally:
            # Holding the lock while unregistering means the watchdog either fired before this
            # point (the exception is pending and surfaces here) or will never fire for us.
            with self._cond:
                self._active.pop(token, None)


_WATCHDOG = _Watchdog()


def _guarded_run(fn: Callable[[], Any], *, limits: RenderLimits, what: str) -> Any:
    env = _env()
    env.limit = limits.max_output_chars
    env.spent = 0
    try:
        with _WATCHDOG.deadline(limits.timeout_s):
            return fn()
    except _RenderTimeout:
        raise TemplateLimitError(
            f"{what} ran past the time limit of {limits.timeout_s:g}s",
            hint="remove the long loop from the template",
        ) from None
    except SecurityError as exc:
        raise TemplateSecurityError(
            f"{what} tried something the sandbox forbids: {exc}",
            hint="templates may only read variables and their public fields",
        ) from None
    except TemplateSyntaxError as exc:
        raise PromptRenderError(
            f"{what} has a syntax error at line {exc.lineno}: {exc.message}",
            hint="fix the Jinja2 syntax",
        ) from None
    except UndefinedError as exc:
        raise PromptRenderError(
            f"{what} used something undefined: {exc.message}",
            hint="declare the variable or fix its name",
        ) from None
    except TemplateNotFound as exc:
        raise TemplateSecurityError(
            f"{what} tried to include, import or extend {exc.name!r}",
            hint="templates cannot read other files; pass the text in as a variable",
        ) from None
    except TemplateError as exc:
        raise PromptRenderError(f"{what} failed: {exc.message or type(exc).__name__}") from None
    except (MemoryError, OverflowError, RecursionError) as exc:
        raise TemplateLimitError(
            f"{what} exceeded a resource limit ({type(exc).__name__})",
            hint="simplify the template",
        ) from None
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        raise PromptRenderError(f"{what} failed: {type(exc).__name__}: {exc}") from None


@functools.lru_cache(maxsize=512)
def _compile(source: str) -> Template:
    return _env().from_string(source)


def compile_template(
    source: str, *, what: str = "template", limits: RenderLimits = DEFAULT_LIMITS
) -> Template:
    """Compile ``source`` in the sandbox (cached by source text).

    Raises:
        PromptRenderError: The template is too long or has a syntax error.
    """
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateLimitError(
            f"{what} is {len(source)} characters, over the limit of {MAX_TEMPLATE_CHARS}",
            hint="pass long text in as a variable instead",
        )
    template: Template = _guarded_run(lambda: _compile(source), limits=limits, what=what)
    return template


def template_variables(source: str, *, what: str = "template") -> frozenset[str]:
    """Names a template reads from its context (variables it needs), without rendering it.

    Raises:
        PromptRenderError: The template has a syntax error.
    """
    compile_template(source, what=what)  # syntax errors surface with a clean message
    return _undeclared(source)


@functools.lru_cache(maxsize=1024)
def _undeclared(source: str) -> frozenset[str]:
    ast = _env().parse(source)
    return frozenset(meta.find_undeclared_variables(ast) - set(_env().globals))


def render_template(
    source: str,
    values: Mapping[str, Any],
    *,
    what: str = "template",
    limits: RenderLimits = DEFAULT_LIMITS,
) -> str:
    """Render ``source`` with ``values`` in the sandbox, within ``limits``.

    Raises:
        PromptRenderError: The template failed; subclasses say whether it was a sandbox violation
            (:class:`TemplateSecurityError`) or a limit (:class:`TemplateLimitError`).
    """
    template = compile_template(source, what=what, limits=limits)

    def run() -> str:
        parts: list[str] = []
        size = 0
        for chunk in template.generate(dict(values)):
            size += len(chunk)
            if size > limits.max_output_chars:
                raise TemplateLimitError(
                    f"{what} produced more than {limits.max_output_chars} characters",
                    hint="shorten the template or the values passed to it",
                )
            parts.append(chunk)
        return "".join(parts)

    text: str = _guarded_run(run, limits=limits, what=what)
    return text
