from __future__ import annotations

import pytest
from pydantic import ValidationError

from llmops.errors import PromptRenderError
from llmops.prompts import PromptSpec


def chat(**extra: object) -> PromptSpec:
    data: dict[str, object] = {
        "name": "greet",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello {{ who }}, you are {{ age }}."},
        ],
        "variables": {"who": {"type": "string"}, "age": {"type": "integer", "default": 30}},
    }
    data.update(extra)
    return PromptSpec.model_validate(data)


def test_render_fills_defaults_and_returns_messages() -> None:
    out = chat().render({"who": "Ada"})
    assert out.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello Ada, you are 30."},
    ]


def test_text_template_renders_to_one_user_message() -> None:
    spec = PromptSpec(name="t", template="Q: {{ q }}")
    out = spec.render({"q": "why?"})
    assert out.text == "Q: why?"
    assert out.messages == [{"role": "user", "content": "Q: why?"}]


def test_undeclared_template_variables_become_required_strings() -> None:
    spec = PromptSpec(name="t", template="{{ a }} {{ b }}", variables={"a": {"type": "integer"}})
    assert spec.variables["b"].type == "string"
    assert spec.variables["b"].required
    assert spec.variables["a"].type == "integer"


def test_missing_unknown_and_mistyped_variables_are_all_named() -> None:
    with pytest.raises(PromptRenderError) as info:
        chat().render({"age": "old", "colour": "red"})
    message = str(info.value)
    assert "unknown variable(s) 'colour'" in message
    assert "missing required variable 'who'" in message
    assert "variable 'age' expects integer, got str 'old'" in message


@pytest.mark.parametrize(
    ("vtype", "good", "bad"),
    [
        ("string", "x", 1),
        ("integer", 3, True),
        ("integer", 3, 2.5),
        ("number", 2.5, False),
        ("boolean", True, "true"),
        ("list", [1], "1"),
        ("object", {"a": 1}, [1]),
    ],
)
def test_variable_types_are_enforced(vtype: str, good: object, bad: object) -> None:
    spec = PromptSpec(name="t", template="{{ v }}", variables={"v": {"type": vtype}})
    spec.render({"v": good})
    with pytest.raises(PromptRenderError, match=f"expects {vtype}"):
        spec.render({"v": bad})


def test_digest_ignores_name_and_key_order_but_not_content() -> None:
    a = chat()
    b = PromptSpec.model_validate({**a.model_dump(), "name": "other"})
    assert a.digest() == b.digest()
    assert a.digest().startswith("sha256:") and len(a.digest()) == 71
    changed = chat(model={"temperature": 0.5})
    assert changed.digest() != a.digest()


def test_exactly_one_of_messages_or_template() -> None:
    with pytest.raises(ValidationError, match="exactly one of 'messages' or 'template'"):
        PromptSpec(name="t")
    with pytest.raises(ValidationError, match="exactly one"):
        PromptSpec(name="t", template="x", messages=[{"role": "user", "content": "y"}])


def test_default_must_match_type_and_cannot_be_required() -> None:
    with pytest.raises(ValidationError, match="default does not match type 'integer'"):
        PromptSpec(
            name="t", template="{{ v }}", variables={"v": {"type": "integer", "default": "x"}}
        )
    with pytest.raises(ValidationError, match="cannot be required"):
        PromptSpec(
            name="t", template="{{ v }}", variables={"v": {"default": "x", "required": True}}
        )


def test_bad_role_and_bad_variable_name_are_refused() -> None:
    with pytest.raises(ValidationError, match="role"):
        PromptSpec(name="t", messages=[{"role": "robot", "content": "x"}])
    with pytest.raises(ValidationError, match="must be an identifier"):
        PromptSpec(name="t", template="x", variables={"bad-name": {}})
