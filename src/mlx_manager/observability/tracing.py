"""Optional tracing: Logfire when its package and LOGFIRE_TOKEN are there, else OpenTelemetry when its FastAPI
instrumentation and an OTLP endpoint are configured; off otherwise, and never a dependency."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from typing import Any

log = logging.getLogger(__name__)


def setup_tracing(app: Any) -> str:
    """Instrument `app` with what is available; returns which backend ("logfire", "otel" or "off")."""
    if os.environ.get("LOGFIRE_TOKEN") and _importable("logfire"):
        logfire = importlib.import_module("logfire")
        logfire.configure(service_name="mlx-manager", send_to_logfire="if-token-present")
        logfire.instrument_fastapi(app)
        log.info("Tracing to Logfire")
        return "logfire"
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") and _importable("opentelemetry.instrumentation.fastapi"):
        module = importlib.import_module("opentelemetry.instrumentation.fastapi")
        module.FastAPIInstrumentor.instrument_app(app)  # exporters come from the OTEL_* environment
        log.info("Tracing with OpenTelemetry to %s", os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"])
        return "otel"
    return "off"


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
