"""Rendering dataset rows to the text a model is trained on, through its chat template.

The template is rendered the way the tokenizer's ``apply_chat_template`` renders it (transformers'
sandboxed Jinja environment), so the gate sees exactly what the trainer will; a recipe may override
the template. For speed the compiled template is called directly, after checking on the first row
that this gives the same text as ``apply_chat_template`` (otherwise every row goes through it). A
row the template cannot render is a :class:`~llmops.errors.DatasetError` naming why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmops.errors import DatasetError

__all__ = ["ChatRenderer"]


@dataclass(slots=True)
class ChatRenderer:
    """Renders rows of any format with one tokenizer and chat template."""

    tokenizer: Any
    template: str | None
    _direct: Any = None
    """The compiled template and its keyword arguments, once shown to agree."""
    _checked: bool = False

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, chat_template: str | None = None) -> ChatRenderer:
        """A renderer for ``tokenizer`` and its template (or ``chat_template``).

        Raises:
            DatasetError: There is no chat template at all.
        """
        template = chat_template or getattr(tokenizer, "chat_template", None)
        if not template:
            raise DatasetError(
                "the tokenizer has no chat template",
                hint="set chat_template in the recipe (a Jinja template)",
            )
        return cls(tokenizer, chat_template)

    def _compiled(self) -> Any:
        try:
            from transformers.utils.chat_template_utils import _compile_jinja_template
        except ImportError:  # another transformers version: use the public path
            return None
        source = self.template or self.tokenizer.chat_template
        if not isinstance(source, str):
            return None
        kwargs = {k: v for k, v in self.tokenizer.special_tokens_map.items() if isinstance(v, str)}
        return _compile_jinja_template(source), kwargs

    def render_messages(self, messages: list[dict[str, Any]]) -> str:
        """The text of a conversation.

        Raises:
            DatasetError: The template failed on it.
        """
        if self._direct is not None:
            template, kwargs = self._direct
            try:
                return str(
                    template.render(messages=messages, add_generation_prompt=False, **kwargs)
                )
            except Exception as exc:
                raise DatasetError(
                    f"chat template failed: {type(exc).__name__}: {exc}".strip()
                ) from None
        text = self._apply(messages)
        if not self._checked:
            self._checked = True
            direct = self._compiled()
            if direct is not None:
                try:
                    same = (
                        direct[0].render(
                            messages=messages, add_generation_prompt=False, **direct[1]
                        )
                        == text
                    )
                except Exception:
                    same = False
                self._direct = direct if same else None
        return text

    def _apply(self, messages: list[dict[str, Any]]) -> str:
        try:
            text = self.tokenizer.apply_chat_template(
                messages, tokenize=False, chat_template=self.template
            )
        except Exception as exc:  # a template raises anything: TemplateError, TypeError ...
            raise DatasetError(
                f"chat template failed: {type(exc).__name__}: {exc}".strip()
            ) from None
        return str(text)

    def render_row(self, data: dict[str, Any], fmt: str) -> str:
        """The longest text a valid row of ``fmt`` trains on."""
        if fmt == "chat":
            return self.render_messages(data["messages"])
        prompt = data["prompt"]
        answers = (
            [data["completion"]]
            if fmt == "prompt-completion"
            else [
                data["chosen"],
                data["rejected"],
            ]
        )
        texts = []
        for answer in answers:
            if isinstance(prompt, list) or isinstance(answer, list):
                turns = _as_messages(prompt, "user") + _as_messages(answer, "assistant")
                texts.append(self.render_messages(turns))
            else:
                texts.append(prompt + answer)
        return max(texts, key=len)


def _as_messages(value: Any, role: str) -> list[dict[str, Any]]:
    return list(value) if isinstance(value, list) else [{"role": role, "content": value}]
