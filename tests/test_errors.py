from __future__ import annotations

import llmops.errors as errors
from llmops.errors import LLMOpsError, PromptFileError


def test_every_error_is_an_llmops_error_and_documented_in_the_tree() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, LLMOpsError)
        assert name in doc, f"{name} missing from the tree in llmops.errors"


def test_one_line_flattens_newlines_and_appends_hint() -> None:
    err = LLMOpsError("bad\nthing  happened", hint="do\nthis")
    assert str(err) == "bad thing happened; do this"


def test_prompt_file_error_names_file_line_and_column() -> None:
    err = PromptFileError("unknown field 'x'", path="prompts/a.yaml", line=3, column=5)
    assert str(err) == "prompts/a.yaml:3:5: unknown field 'x'"
    assert (err.path, err.line, err.column) == ("prompts/a.yaml", 3, 5)
