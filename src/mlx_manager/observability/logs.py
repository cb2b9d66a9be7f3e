"""Logging: human lines by default or JSON, to stderr and a rotating file in the state dir; uvicorn, httpx and
huggingface_hub go through the same handlers."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import time
from io import TextIOWrapper
from pathlib import Path
from typing import Any, cast

from mlx_manager.file_modes import FILE_MODE, private_dir, private_file

# Fields an access line carries besides its message (see api/access.py).
ACCESS_FIELDS = ("request_id", "method", "path", "status", "model", "prompt_tokens", "completion_tokens", "latency_ms")
_THIRD_PARTY = ("uvicorn", "uvicorn.error", "httpx", "huggingface_hub", "alembic")


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log whose files are created 0600: logs name users, keys' prefixes and backends' errors."""

    def _open(self) -> TextIOWrapper:
        private_file(Path(self.baseFilename))  # one made by an older version
        stream = open(  # noqa: SIM115 (the handler keeps it open)
            self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors, opener=_owner_only
        )
        return cast(TextIOWrapper, stream)


def _owner_only(path: str, flags: int) -> int:
    return os.open(path, flags, FILE_MODE)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: getattr(record, k) for k in ACCESS_FIELDS if hasattr(record, k)})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(level: str, json_lines: bool = False, log_file: Path | None = None, max_bytes: int = 10 << 20,
                  backups: int = 5) -> None:  # fmt: skip
    formatter: logging.Formatter = (
        JsonFormatter() if json_lines else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file is not None:
        private_dir(log_file.parent)
        handlers.append(PrivateRotatingFileHandler(log_file, maxBytes=max_bytes, backupCount=backups))
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.basicConfig(level=level.upper(), handlers=handlers, force=True)
    for name in _THIRD_PARTY:  # one sink for everything: drop their own handlers and let records propagate
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # our access line has more (model, tokens, request id)
