"""`mlx-manager distributed check HOSTFILE`, run as a user would: a loopback ring that works, a host without the
IPs the ring needs, and jaccl where it cannot run, each said by rank."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LOCAL = {"ssh": "localhost", "ips": ["127.0.0.1"]}


def check(tmp_path: Path, hosts: list[dict[str, object]], *args: str) -> subprocess.CompletedProcess[str]:
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps(hosts))
    cmd = [sys.executable, "-m", "mlx_manager", "distributed", "check", str(hostfile), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})


def test_two_loopback_ranks_join_a_ring(tmp_path: Path) -> None:
    out = check(tmp_path, [LOCAL, LOCAL])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "rank 1" in out.stdout and "mlx 0." in out.stdout and "ready" in out.stdout


def test_a_host_without_ips_is_named_for_the_ring(tmp_path: Path) -> None:
    out = check(tmp_path, [LOCAL, {"ssh": "mac-studio-2"}])
    assert out.returncode == 1
    line = next(x for x in out.stdout.splitlines() if x.startswith("rank 1"))
    assert "mac-studio-2" in line and "FAIL" in line and "IPs" in line


def test_jaccl_says_it_needs_rdma_and_macos(tmp_path: Path) -> None:
    out = check(tmp_path, [LOCAL, LOCAL], "--backend", "jaccl")
    assert out.returncode == 1 and "RDMA" in out.stdout and "not ready" in out.stdout


def test_a_hostfile_that_is_not_a_list_is_an_error(tmp_path: Path) -> None:
    hostfile = tmp_path / "bad.json"
    hostfile.write_text("{}")
    cmd = [sys.executable, "-m", "mlx_manager", "distributed", "check", str(hostfile)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "hostfile" in out.stdout
