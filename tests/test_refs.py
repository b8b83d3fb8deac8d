from __future__ import annotations

import pytest

from llmops.errors import InvalidNameError, InvalidReferenceError
from llmops.refs import Ref, check_label, check_name, parse_ref

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("summarize", Ref(name="summarize")),
        ("summarize@latest", Ref(name="summarize")),
        ("summarize@3", Ref(name="summarize", version=3)),
        ("summarize@production", Ref(name="summarize", label="production")),
        ("a.b_c-d@v2", Ref(name="a.b_c-d", label="v2")),
        (DIGEST, Ref(digest=DIGEST)),
        ("blake3:" + "0" * 64, Ref(digest="blake3:" + "0" * 64)),
    ],
)
def test_parse_ref_accepts_every_form(text: str, expected: Ref) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize(
    ("text", "kind"),
    [("x", "latest"), ("x@1", "version"), ("x@prod", "label"), (DIGEST, "digest")],
)
def test_ref_kind(text: str, kind: str) -> None:
    assert parse_ref(text).kind == kind


def test_ref_str_round_trips() -> None:
    for text in ("x", "x@4", "x@staging", DIGEST):
        assert str(parse_ref(text)) == text


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "invalid reference ''"),
        ("a/b", "invalid reference 'a/b'"),
        ("../etc", "invalid reference"),
        ("has space", "invalid reference"),
        ("ctl\x07char", "invalid reference"),
        ("x@0", "versions start at 1"),
        ("x@", "neither a version number nor a label"),
        ("x@a/b", "neither a version number nor a label"),
        ("x@1@2", "neither a version number nor a label"),
        ("sha256:abc", "invalid digest reference"),
        ("a" * 129, "invalid reference"),
    ],
)
def test_parse_ref_rejects_malformed(text: str, match: str) -> None:
    with pytest.raises(InvalidReferenceError, match=match):
        parse_ref(text)


def test_parse_ref_error_is_one_line_with_hint() -> None:
    with pytest.raises(InvalidReferenceError) as info:
        parse_ref("bad name\n@x")
    assert "\n" not in str(info.value)
    assert "expected NAME" in str(info.value)


@pytest.mark.parametrize("name", ["a/b", "a\\b", "a b", "tab\t", "nl\n", "..", ".hidden", "é"])
def test_check_name_refuses_separators_spaces_control_chars(name: str) -> None:
    with pytest.raises(InvalidNameError, match="invalid name"):
        check_name(name)


@pytest.mark.parametrize(
    ("label", "match"), [("123", "all-digit"), ("latest", "implicit"), ("a b", "invalid label")]
)
def test_check_label_refuses_reserved_and_bad(label: str, match: str) -> None:
    with pytest.raises(InvalidNameError, match=match):
        check_label(label)


def test_check_name_rejects_non_strings() -> None:
    with pytest.raises(TypeError, match="must be a str"):
        check_name(3)  # type: ignore[arg-type]
