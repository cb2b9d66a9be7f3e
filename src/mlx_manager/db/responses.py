"""Moved to mlx_manager/manager/responses_store.py, beside the other stores; this name stays only until the
Responses API and app.py (being refactored now) import it from there."""

from mlx_manager.manager.responses_store import ResponseStore

__all__ = ["ResponseStore"]
