"""Secrets never reach what llmops stores or prints."""

from __future__ import annotations

import pytest

from llmops._redact import REDACTED, Redactor, secret_fields, url_credentials


@pytest.mark.parametrize(
    "text",
    [
        "HTTP 401: {'headers': {'Authorization': 'Bearer abcdefgh12345678'}}",
        "invalid key: Bearer abcdefgh12345678",
        "POST http://alice:s3cr3tkey@10.0.0.1/v1 failed",
        "your key sk-proj-ABCDEFGHIJKLMNOPQRSTUVWX is invalid",
        "token hf_ABCDEFGHIJKLMNOPQRSTUVWXYZ used",
        '{"api_key": "abcdefgh12345678"}',
        "AKIAABCDEFGHIJKLMNOP denied",
    ],
)
def test_known_shapes_are_redacted(text: str) -> None:
    out = Redactor(environ={})(text)
    assert REDACTED in out
    for secret in ("abcdefgh12345678", "s3cr3tkey", "ABCDEFGHIJKLMNOPQRSTUVWX", "AKIAABCDEFGH"):
        assert secret not in out


def test_values_of_key_variables_are_redacted_wherever_they_appear() -> None:
    env = {"MY_PROVIDER_CRED": "plainvalue-42", "OTHER_TOKEN": "tok-777777", "HOME": "/root"}
    redactor = Redactor(["MY_PROVIDER_CRED"], environ=env)
    assert redactor.values("echo plainvalue-42 and tok-777777 from /root") == (
        f"echo {REDACTED} and {REDACTED} from /root"
    )
    assert Redactor(environ={}).values("plainvalue-42") == "plainvalue-42"


def test_ordinary_text_is_left_alone() -> None:
    text = "The capital of France is Paris. Use https://example.com/v1 with sk as a prefix."
    assert Redactor(environ={})(text) == text


def test_secret_fields_and_url_credentials() -> None:
    assert secret_fields({"api_key": "x1", "top_p": 0.9, "api_key_env": "OPENAI_API_KEY"}) == [
        "api_key"
    ]
    assert secret_fields({"headers": {"Authorization": "Bearer x"}}) == ["headers.Authorization"]
    assert secret_fields({"stop": ["sk-ABCDEFGHIJKLMNOPQRSTUVWX"]}) == ["stop[0]"]
    assert url_credentials("http://u:p@h/v1") and not url_credentials("http://h:8000/v1")


@pytest.mark.parametrize(
    "extra",
    [
        {"extra_headers": {"api-key": "azure-secret-1"}},
        {"extra_headers": {"X-Api-Key": "k-123456"}},
        {"extra_headers": {"Ocp-Apim-Subscription-Key": "k-123456"}},
        {"extra_headers": {"Proxy-Authorization": "Basic dXNlcjpodW50ZXIy"}},
        {"extra_headers": {"Cookie": "session=abcdef"}},
        {"extra_headers": {"X-Auth": "abcdef"}},
        {"extra_body": {"key": "abcdef"}},
    ],
)
def test_keys_under_other_names_are_found(extra: dict[str, object]) -> None:
    assert secret_fields(extra), extra


@pytest.mark.parametrize(
    "url", ["http://h/v1?api-key=abc", "http://h/v1?key=abc", "http://h/v1?token=abc"]
)
def test_keys_in_url_queries_are_credentials(url: str) -> None:
    assert url_credentials(url)
    assert not url_credentials("http://h/v1?version=2024-01-01")


def test_escaped_and_encoded_echoes_of_a_key_are_redacted() -> None:
    env = {"MYLLM": "k3y/Part2/Part3+Part4xyz"}
    redactor = Redactor(["MYLLM"], environ=env)
    for echo in ["k3y\\/Part2\\/Part3+Part4xyz", "k3y%2FPart2%2FPart3%2BPart4xyz",
                 "k3y/Part2/Part3\\u002bPart4xyz"]:  # fmt: skip
        assert redactor.values(f"bad key {echo}!") == f"bad key {REDACTED}!", echo


@pytest.mark.parametrize(
    "extra",
    [
        {"api_key": ["k1234567"]},
        {"token": {"value": "k1234567"}},
        {"auth": {"pw": "k1234567"}},
        {"extra_headers": {"x-functions-key": "k1234567"}},
        {"passphrase": "k1234567"},
        {"private_key": "k1234567"},
        {"license_key": "k1234567"},
        {"api_key": 1234567890.5},
    ],
)
def test_secrets_of_any_shape_under_secret_names(extra: dict[str, object]) -> None:
    assert secret_fields(extra), extra


@pytest.mark.parametrize(
    "url",
    [
        "http://h/api?code=abcdef",
        "http://h/v1;api_key=abcdef",
        "http://h/v1#api_key=abcdef",
        "http://h/sk-ABCDEFGHIJKLMNOPQRSTUVWX/v1",
    ],
)
def test_keys_anywhere_in_a_url(url: str) -> None:
    assert url_credentials(url)


def test_more_echo_forms_are_redacted() -> None:
    import base64

    secret = "AbCdEf123/456+789xyzQQ=="
    redactor = Redactor(["K"], environ={"K": secret})
    for echo in [base64.b64encode(secret.encode()).decode(), secret.upper(),
                 "AbCdEf123%252F456%252B789xyzQQ%253D%253D"]:  # fmt: skip
        assert REDACTED in redactor.values(f"x {echo} y"), echo


def test_key_like_names_and_path_variables() -> None:
    assert secret_fields({"extra_headers": {"X-AccessKey": "k1234567", "X-Session": "s1234567"}})
    assert url_credentials("http://h/v1?accesskey=Zq81LmPx0aR7tYvB3nWc")
    redactor = Redactor(environ={"PWD": "/tmp/work/here", "OLDPWD": "/tmp/work"})
    assert redactor("error in /tmp/work/here/x.yaml") == "error in /tmp/work/here/x.yaml"
