"""Tracing is off unless its package and credentials are present; with them, the app is instrumented."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from mlx_manager.observability.tracing import setup_tracing


def test_tracing_is_off_without_a_token_or_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOGFIRE_TOKEN", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert setup_tracing(object()) == "off"


def test_logfire_instruments_the_app_when_present_and_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []
    fake = types.ModuleType("logfire")
    fake.__spec__ = types.SimpleNamespace(name="logfire")  # type: ignore[assignment]
    fake.configure = lambda **kw: calls.append(("configure", kw))  # type: ignore[attr-defined]
    fake.instrument_fastapi = lambda app: calls.append(("instrument", app))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "logfire", fake)
    monkeypatch.setenv("LOGFIRE_TOKEN", "t")
    app = object()
    assert setup_tracing(app) == "logfire"
    assert calls[0][0] == "configure" and calls[1] == ("instrument", app)
