"""The content of a prompt version: messages or a template, variables and model parameters.

A :class:`PromptSpec` is exactly what a prompt file in ``prompts/`` holds and what the content
digest covers. Registry bookkeeping (version number, author, commit message, labels) lives on
:class:`~llmops.prompts.PromptVersion` instead.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from llmops.errors import InputError, PromptRenderError
from llmops.prompts._sandbox import RenderLimits, render_template, template_variables
from llmops.refs import check_name

__all__ = [
    "FORMAT_VERSION",
    "Message",
    "ModelParams",
    "PromptSpec",
    "RenderedPrompt",
    "Variable",
    "VariableType",
]

FORMAT_VERSION = 1
"""Version of the prompt file and stored-spec format."""

VariableType = Literal["string", "integer", "number", "boolean", "list", "object", "any"]

_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "list": (list, tuple),
    "object": (dict,),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def type_error(name: str, expected: str, value: Any) -> str | None:
    """Describe why ``value`` is not of variable type ``expected``, or ``None`` when it is."""
    if expected == "any":
        return None
    ok = isinstance(value, _PYTHON_TYPES[expected])
    # bool is an int in Python, but a prompt that wants a number never wants True.
    if expected in ("integer", "number") and isinstance(value, bool):
        ok = False
    if ok:
        return None
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return f"variable {name!r} expects {expected}, got {type(value).__name__} {shown}"


class Variable(_Strict):
    """A declared template variable."""

    type: VariableType = "string"
    """Type a value must have: string, integer, number, boolean, list, object or any."""
    required: bool = True
    """Whether a value must be given; false when a default is declared."""
    default: JsonValue = None
    """Value used when none is given (only for variables that are not required)."""
    description: str = ""
    """What the variable is for, shown in listings and the dashboard."""

    @model_validator(mode="before")
    @classmethod
    def _default_means_optional(cls, data: Any) -> Any:
        if isinstance(data, dict) and "default" in data and "required" not in data:
            data = {**data, "required": False}
        return data

    @model_validator(mode="after")
    def _check_default(self) -> Variable:
        if self.required and self.default is not None:
            raise ValueError("a variable with a default cannot be required")
        if self.default is not None:
            problem = type_error("default", self.type, self.default)
            if problem is not None:
                raise ValueError(f"default does not match type {self.type!r}")
        return self


class Message(_Strict):
    """One chat message with a templated content."""

    role: Literal["system", "user", "assistant"]
    """Who speaks: system, user or assistant."""
    content: str
    """Jinja2 template of the message text, rendered in the sandbox."""


class ModelParams(_Strict):
    """Model parameters that travel with the prompt (all optional)."""

    name: str | None = None
    """Model to call, e.g. ``gpt-4o-mini`` or ``smollm2-135m-instruct``."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    """Sampling temperature."""
    max_tokens: int | None = Field(default=None, gt=0)
    """Most tokens to generate."""
    top_p: float | None = Field(default=None, gt=0, le=1)
    """Nucleus sampling probability mass."""
    stop: list[str] | None = None
    """Stop sequences."""
    seed: int | None = None
    """Sampling seed, for providers that honour one."""
    response_format: JsonValue = None
    """Structured output request, e.g. ``{"type": "json_object"}`` or a JSON schema."""
    extra: dict[str, JsonValue] = Field(default_factory=dict)
    """Provider-specific parameters passed through unchanged."""


class RenderedPrompt(_Strict):
    """The result of rendering a prompt version: chat messages ready for any model."""

    messages: list[dict[str, str]]
    """Chat messages as ``{"role", "content"}`` dicts; a text template becomes one user message."""
    text: str | None = None
    """The rendered text, for text-template prompts."""
    model: ModelParams = Field(default_factory=ModelParams)
    """The prompt's model parameters, for the caller to pass on."""


class PromptSpec(_Strict):
    """What a prompt file holds; the content digest covers every field except ``name``."""

    name: str
    """Prompt name: letters, digits, '.', '_' and '-'."""
    description: str = ""
    """One line saying what the prompt does."""
    messages: list[Message] | None = None
    """Chat messages (give either this or ``template``)."""
    template: str | None = None
    """A single text template (give either this or ``messages``)."""
    variables: dict[str, Variable] = Field(default_factory=dict)
    """Declared variables; ones a template uses without declaring become required strings."""
    model: ModelParams = Field(default_factory=ModelParams)
    """Model parameters."""
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    """Free-form metadata (owner, ticket, tags ...)."""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        try:
            return check_name(value, what="prompt name")
        except InputError as exc:  # a ValueError lets pydantic report it with the other problems
            raise ValueError(exc.one_line()) from None

    @field_validator("variables")
    @classmethod
    def _valid_variable_names(cls, value: dict[str, Variable]) -> dict[str, Variable]:
        for var in value:
            if not var.isidentifier() or var.startswith("_"):
                raise ValueError(
                    f"variable name {var!r} must be an identifier that does not start with '_'"
                )
        return value

    @model_validator(mode="after")
    def _check_body_and_infer_variables(self) -> PromptSpec:
        if (self.messages is None) == (self.template is None):
            raise ValueError("give exactly one of 'messages' or 'template'")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' must hold at least one message")
        used: set[str] = set()
        for what, source in self.templates():
            used |= template_variables(source, what=what)
        # Undeclared variables become required strings, written into the spec so that every
        # stored version declares all of its variables explicitly.
        missing = {name: Variable() for name in sorted(used - set(self.variables))}
        if missing:
            object.__setattr__(self, "variables", {**self.variables, **missing})
        return self

    def templates(self) -> list[tuple[str, str]]:
        """``(where, source)`` for every template in the spec, in order."""
        if self.template is not None:
            return [("template", self.template)]
        return [(f"messages[{i}].content", m.content) for i, m in enumerate(self.messages or [])]

    def canonical(self) -> dict[str, Any]:
        """The spec as plain data with defaults filled in and keys in a fixed order."""
        return self.model_dump(mode="json", exclude_none=False)

    def digest(self) -> str:
        """``sha256:<hex>`` of the canonical JSON of everything but the name."""
        body = self.canonical()
        body.pop("name")
        blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return "sha256:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def bind(self, values: dict[str, Any]) -> dict[str, Any]:
        """Check ``values`` against the declared variables and fill in defaults.

        Raises:
            PromptRenderError: A value is unknown, missing or of the wrong type (all are named).
        """
        problems: list[str] = []
        unknown = sorted(set(values) - set(self.variables))
        if unknown:
            problems.append(
                f"unknown variable(s) {', '.join(map(repr, unknown))}"
                f" (declared: {', '.join(self.variables) or 'none'})"
            )
        bound: dict[str, Any] = {}
        for name, var in self.variables.items():
            if name in values:
                problem = type_error(name, var.type, values[name])
                if problem:
                    problems.append(problem)
                bound[name] = values[name]
            elif var.required:
                problems.append(f"missing required variable {name!r} ({var.type})")
            else:
                bound[name] = var.default
        if problems:
            raise PromptRenderError(f"prompt {self.name!r}: " + "; ".join(problems))
        return bound

    def render(
        self, values: dict[str, Any], *, limits: RenderLimits | None = None
    ) -> RenderedPrompt:
        """Render the prompt with ``values`` in the sandbox.

        Raises:
            PromptRenderError: Bad variables, or the template failed in the sandbox.
        """
        bound = self.bind(values)
        kwargs = {"limits": limits} if limits is not None else {}
        if self.template is not None:
            text = render_template(
                self.template, bound, what=f"prompt {self.name!r} template", **kwargs
            )
            return RenderedPrompt(
                messages=[{"role": "user", "content": text}], text=text, model=self.model
            )
        messages = [
            {
                "role": m.role,
                "content": render_template(
                    m.content, bound, what=f"prompt {self.name!r} messages[{i}]", **kwargs
                ),
            }
            for i, m in enumerate(self.messages or [])
        ]
        return RenderedPrompt(messages=messages, model=self.model)
