"""Only real loopback addresses count as loopback for the remote-bind check (issue #12, finding 10): a name such
as 127.evil.example resolves wherever its DNS says, so binding to it needs an API key like any other address."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlx_manager.testing.server import free_port, server_env


@pytest.mark.parametrize("host", ["127.evil.example", "127.0.0.1.nip.io", "localhost.evil.example"])
def test_a_name_that_looks_like_loopback_needs_a_key(tmp_path: Path, host: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mlx_manager", "serve", "--host", host, "--port", str(free_port())],
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and f"refusing to listen on {host} without an API key" in out.stderr, out.stderr


def test_loopback_addresses_still_count(tmp_path: Path) -> None:
    from mlx_manager.config import Settings

    for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"):
        assert Settings(host=host).is_loopback, host
