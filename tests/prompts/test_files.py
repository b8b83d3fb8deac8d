from __future__ import annotations

from pathlib import Path

import pytest

from llmops.errors import PromptFileError
from llmops.prompts import dump_prompt_file, load_prompt_file, parse_prompt_yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "prompts"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_prompts_load_and_round_trip(path: Path) -> None:
    spec = load_prompt_file(path)
    again = parse_prompt_yaml(dump_prompt_file(spec))
    assert again.digest() == spec.digest()
    assert again.name == spec.name


def test_malformed_yaml_names_file_line_and_column() -> None:
    text = "name: x\nmessages:\n  - role: user\n    content: [unclosed\n"
    with pytest.raises(PromptFileError, match=r"^p\.yaml:5:1: malformed YAML") as info:
        parse_prompt_yaml(text, path="p.yaml")
    assert info.value.line == 5


def test_unknown_field_gets_did_you_mean_and_line() -> None:
    text = "name: x\ntemplate: hi\nvariabels: {}\n"
    with pytest.raises(
        PromptFileError,
        match=r"p\.yaml:3:1: unknown field 'variabels'"
        r" \(did you mean 'variables'\?\)",
    ):
        parse_prompt_yaml(text, path="p.yaml")


def test_unknown_nested_field_points_at_its_line() -> None:
    text = "name: x\ntemplate: hi\nmodel:\n  temprature: 0.1\n"
    with pytest.raises(
        PromptFileError,
        match=r":4:3: unknown field 'model.temprature'"
        r" \(did you mean 'temperature'\?\)",
    ):
        parse_prompt_yaml(text, path="p.yaml")


def test_every_problem_is_reported_at_once() -> None:
    text = "name: x\ntemplate: hi\nfoo: 1\nmodel:\n  temperature: 9\n"
    with pytest.raises(PromptFileError) as info:
        parse_prompt_yaml(text, path="p.yaml")
    message = str(info.value)
    assert "unknown field 'foo'" in message
    assert "model.temperature" in message and "line 5" in message


def test_name_schema_and_template_problems_are_reported_together() -> None:
    text = 'name: "bad name"\ndescriptin: x\ntemplate: "Hello {{ text"\n'
    with pytest.raises(PromptFileError) as info:
        parse_prompt_yaml(text, path="p.yaml")
    message = str(info.value)
    assert message.startswith("p.yaml:1:7: name: invalid prompt name 'bad name'")
    assert "line 2: unknown field 'descriptin' (did you mean 'description'?)" in message
    assert "line 3: template has a syntax error" in message


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(PromptFileError, match="duplicate key 'name'"):
        parse_prompt_yaml("name: a\nname: b\ntemplate: x\n")


def test_template_syntax_error_is_reported() -> None:
    with pytest.raises(PromptFileError, match=r"messages\[0\]\.content has a syntax error"):
        parse_prompt_yaml("name: x\nmessages:\n  - role: user\n    content: '{% if %}'\n")


@pytest.mark.parametrize("name", ["a/b", "../../etc/passwd", "has space", "bell\\a", "tab\\tname"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(PromptFileError, match="invalid prompt name"):
        parse_prompt_yaml(f'name: "{name}"\ntemplate: x\n', path="p.yaml")


def test_yaml_python_tags_are_not_executed() -> None:
    with pytest.raises(PromptFileError, match="malformed YAML"):
        parse_prompt_yaml("name: !!python/object/apply:os.system ['id']\ntemplate: x\n")


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(PromptFileError, match="expected a mapping"):
        parse_prompt_yaml("- a\n- b\n")


def test_future_format_version_is_refused() -> None:
    with pytest.raises(PromptFileError, match="format_version 99 is not supported"):
        parse_prompt_yaml("format_version: 99\nname: x\ntemplate: y\n")


def test_invalid_utf8_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: x\ntemplate: \xff\xfe\n")
    with pytest.raises(PromptFileError, match="not valid UTF-8 at byte 18"):
        load_prompt_file(bad)
    with pytest.raises(PromptFileError, match="no such file"):
        load_prompt_file(tmp_path / "missing.yaml")


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("name: x\ntemplate: '" + "a" * 1_000_001 + "'\n")
    with pytest.raises(PromptFileError, match="over the limit"):
        load_prompt_file(big)


def test_dump_writes_multiline_strings_as_blocks() -> None:
    spec = parse_prompt_yaml('name: x\ntemplate: "line one\\nline two\\n"\n')
    text = dump_prompt_file(spec)
    assert "template: |\n  line one\n  line two\n" in text
