"""Base URLs as users paste them (the SDKs' forms, bare hosts, trailing slashes) to the one form the clients use."""

from __future__ import annotations

import pytest

from mlx_manager.routing.base_url import normalize_base_url


@pytest.mark.parametrize(
    ("kind", "pasted", "stored"),
    [
        # OpenAI-compatible: the SDK's base_url holds the version; a bare host gets /v1.
        ("openai", "http://10.0.0.2:8000/v1", "http://10.0.0.2:8000/v1"),
        ("openai", "https://api.openai.com/v1/", "https://api.openai.com/v1"),
        ("openai", "http://host:8080", "http://host:8080/v1"),
        ("openai", "http://host:8080/", "http://host:8080/v1"),
        ("openai", "  https://api.groq.com/openai/v1  ", "https://api.groq.com/openai/v1"),
        (
            "openai",
            "https://generativelanguage.googleapis.com/v1beta/openai/",
            "https://generativelanguage.googleapis.com/v1beta/openai",
        ),
        # Anthropic-compatible: the SDK's base_url has no version; the client adds /v1/messages.
        ("anthropic", "https://api.anthropic.com", "https://api.anthropic.com"),
        ("anthropic", "https://api.anthropic.com/v1", "https://api.anthropic.com"),
        ("anthropic", "https://api.anthropic.com/v1/", "https://api.anthropic.com"),
        ("anthropic", "http://proxy:4000/anthropic/v1", "http://proxy:4000/anthropic"),
    ],
)
def test_every_pasted_form_becomes_the_one_the_client_appends_to(kind: str, pasted: str, stored: str) -> None:
    assert normalize_base_url(kind, pasted) == stored
    assert normalize_base_url(kind, stored) == stored  # stored URLs go through it again when used


def test_no_form_yields_a_doubled_version() -> None:
    for pasted in ("http://h:1", "http://h:1/v1", "http://h:1/v1/"):
        assert "/v1/v1" not in normalize_base_url("openai", pasted) + "/chat/completions"
        assert "/v1/v1" not in normalize_base_url("anthropic", pasted) + "/v1/messages"
