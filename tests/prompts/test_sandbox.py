"""Hostile templates fail with a clear error and execute nothing; values are never re-rendered."""

from __future__ import annotations

import time

import pytest

from llmops.errors import PromptRenderError, TemplateLimitError, TemplateSecurityError
from llmops.prompts._sandbox import RenderLimits, render_template, template_variables

FAST = RenderLimits(timeout_s=0.5)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ x.__class__.__init__.__globals__ }}",
        "{{ ''.__class__ }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ x.append(1) }}",
        "{{ '{0.__class__}'.format(x) }}",
        "{% include '/etc/passwd' %}",
        "{% import 'os' as os %}{{ os.system('id') }}",
        "{% extends 'base.html' %}",
        "{% from 'x' import y %}",
    ],
)
def test_sandbox_escape_payloads_are_refused(source: str) -> None:
    with pytest.raises(PromptRenderError) as info:
        render_template(source, {"x": []}, limits=FAST)
    assert isinstance(info.value, (TemplateSecurityError, PromptRenderError))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{% include '/etc/passwd' %}",
        "{% import 'os' as os %}",
        "{{ x.append(1) }}",
    ],
)
def test_security_violations_raise_security_error(source: str) -> None:
    with pytest.raises(TemplateSecurityError):
        render_template(source, {"x": []}, limits=FAST)


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 100000000 }}",
        "{{ [1] * 100000000 }}",
        "{{ 'x' | center(1000000000) }}",
        "{{ 'ab' | indent(1000000000) }}",
        "{% set a = 'x' * 900000 %}{{ a ~ a }}",
        "{{ '%999999999d' % 1 }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ 'x'.ljust(1000000000) }}",
        "{{ ('a' * 1000) | replace('', 'b' * 1000) }}",
        "{{ 2 ** 100000 }}",
        "{% for i in range(100000) %}{{ 'xxxxxxxxxxxxxxxxxxxx' }}{% endfor %}",
    ],
)
def test_size_bombs_hit_the_limit_before_allocating(source: str) -> None:
    with pytest.raises(TemplateLimitError):
        render_template(source, {}, limits=FAST)


def test_endless_loop_is_stopped_by_the_time_limit() -> None:
    source = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(TemplateLimitError, match=r"time limit of 0\.5s"):
        render_template(source, {}, limits=FAST)
    assert time.monotonic() - started < 5


def test_renders_after_a_timeout_still_work() -> None:
    with pytest.raises(TemplateLimitError):
        render_template(
            "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
            {},
            limits=RenderLimits(timeout_s=0.2),
        )
    assert render_template("ok {{ a }}", {"a": 1}) == "ok 1"


def test_value_with_template_syntax_stays_literal() -> None:
    out = render_template("Hi {{ name }}", {"name": "{{ 7 * 7 }} {% include 'x' %}"})
    assert out == "Hi {{ 7 * 7 }} {% include 'x' %}"


def test_namespace_and_random_are_not_available() -> None:
    with pytest.raises(PromptRenderError, match="namespace"):
        render_template("{% set ns = namespace(a=1) %}", {})
    with pytest.raises(PromptRenderError, match="random"):
        render_template("{{ [1, 2] | random }}", {})


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(PromptRenderError, match="syntax error at line 2"):
        render_template("ok\n{% for x in y %}", {}, what="messages[0].content")


def test_ordinary_templates_render() -> None:
    source = "{% for q in items %}{{ loop.index }}. {{ q | upper }}\n{% endfor %}"
    assert render_template(source, {"items": ["a", "b"]}) == "1. A\n2. B\n"


def test_template_variables_finds_what_a_template_reads() -> None:
    found = template_variables("{{ a }} {% for x in b %}{{ x }}{% endfor %}{{ range(2)|list }}")
    assert found == {"a", "b"}


def test_render_limits_validate_arguments() -> None:
    with pytest.raises(ValueError, match="positive"):
        RenderLimits(timeout_s=0)


@pytest.mark.parametrize(
    "source",
    [
        "{% set x = ((3**64)**64)**64 %}{{ (x*x)**64 > 0 }}",
        "{% set x = 7**64 %}{% set y = x**64 %}{{ (y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*y*y) > 0 }}",
        "{{ '{0:{1}}'.format('x', '2999999999') | length }}",
        "{{ '{0:999999}{0:999999}{0:999999}'.format('x') | length }}",
        "{{ ('%999999s' * 3) % ('a', 'b', 'c') }}",
        "{{ '%*d' % (999999, 1) }}",
        "{{ ('x' * 999999).translate({120: 'y' * 999999}) | length }}",
        "{{ ('\t' * 999999).expandtabs(999999) | length }}",
        "{{ ('x' * 999999).join(['a'] * 999999) | length }}",
        "{% set big = ['a' * 999999] %}{{ (big * 999999) | join | length }}",
        "{{ ('\n' * 999999) | indent('x' * 999999) | length }}",
        "{% set big = ['a' * 999999, 'b' * 999999] %}{{ big | string | length }}",
    ],
)
def test_cpu_and_memory_bombs_are_refused_before_they_run(source: str) -> None:
    import resource

    started = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(TemplateLimitError):
        render_template(source, {}, limits=RenderLimits(timeout_s=2.0))
    assert time.monotonic() - started < 3
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, f"peak memory grew by {grown_mb:.0f} MB"


def test_ordinary_arithmetic_and_formatting_still_work() -> None:
    source = (
        "{{ 2 ** 64 }} {{ '%5s|' % 'ab' }} {{ '{:>4}'.format(7) }} {{ ['a', 'b'] | join('-') }}"
    )
    assert render_template(source, {}) == "18446744073709551616    ab|    7 a-b"
    assert render_template("{{ 'a\tb'.expandtabs(4) }}", {}) == "a   b"


@pytest.mark.parametrize(
    "source",
    [
        "{{ (['a'] * 1000) | map('center', 999999) | list | length }}",
        "{{ (['a'] * 1500) | map('center', 999999) | join | length }}",
        "{{ (['a'] * 1500) | map('center', 999999) | sort | length }}",
    ],
)
def test_lazy_filter_results_are_sized_as_they_are_collected(source: str) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateLimitError, match="'map' produced more than"):
        render_template(source, {}, limits=RenderLimits(timeout_s=2.0))
    assert time.monotonic() - started < 1
    assert render_template("{{ [1, 2, 3] | map('string') | join(',') }}", {}) == "1,2,3"


@pytest.mark.parametrize(
    ("source", "values"),
    [
        ("{% set l = range(N|int)|batch(1)|list %}{{ (l|sum(start=[]))|length }}", {"N": "100000"}),
        (
            "{% set a = 'x' * 999000 %}{% set l = ["
            + ", ".join(f"a ~ {i}" for i in range(2000))
            + "] %}{{ l|length }}",
            {},
        ),
    ],
)
def test_many_values_under_the_limit_cannot_add_up_to_gigabytes(
    source: str, values: dict[str, str]
) -> None:
    import resource

    started = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(TemplateLimitError):
        render_template(source, values, limits=RenderLimits(timeout_s=2.0))
    assert time.monotonic() - started < 3
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 200
    assert render_template("{{ [1, 2, 3] | sum }}", {}) == "6"


def test_lists_are_charged_for_what_they_hold() -> None:
    words = ", ".join(["s.split()"] * 400)
    source = "{% set s = ('x' * 49 ~ ' ') * 19999 %}{% set a = [" + words + "] %}{{ a | length }}"
    with pytest.raises(TemplateLimitError, match="in all"):
        render_template(source, {}, limits=RenderLimits(timeout_s=2.0))
