"""`mlx-manager distributed check HOSTFILE`: before anything loads, whether each host can be reached, runs the
same mlx / mlx-lm versions as this machine, and has what the backend needs (ring: IPs; jaccl: RDMA devices)."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from mlx_manager.engine.distributed.supervisor import Host, read_hostfile

VERSIONS_SCRIPT = "import importlib.metadata as m; print(m.version('mlx'), m.version('mlx-lm'))"
RING_SCRIPT = (
    "import mlx.core as mx; g = mx.distributed.init(strict=True, backend='ring');"
    " print(mx.distributed.all_sum(mx.array([1.0]), group=g).item())"
)


@dataclass(frozen=True)
class HostCheck:
    rank: int
    host: str
    ok: bool
    detail: str


def local_versions() -> tuple[str, str]:
    return version("mlx"), version("mlx-lm")


def _port_open(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection opens, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"


def check_host(rank: int, host: Host, backend: str, rdma: object, timeout: float = 5.0) -> HostCheck:
    def bad(why: str) -> HostCheck:
        return HostCheck(rank, host.ssh, False, why)

    if backend == "ring" and not host.ips:
        return bad("the ring backend needs the host's IPs ('ips' in the hostfile)")
    if backend == "jaccl" and not rdma:
        return bad("jaccl needs the host's RDMA devices ('rdma' in the hostfile; Thunderbolt 5 Macs only)")
    mine = local_versions()
    if host.local:
        return HostCheck(rank, host.ssh, True, f"this machine (mlx {mine[0]}, mlx-lm {mine[1]})")
    why = _port_open(host.ssh, 22, timeout)
    if why is not None:
        return bad(f"cannot reach SSH ({why})")
    python = host.python or "python3"
    cmd = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(timeout)}", host.ssh, python, "-c"]
    try:
        out = subprocess.run([*cmd, json.dumps(VERSIONS_SCRIPT)], capture_output=True, text=True, timeout=timeout * 4)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return bad(f"ssh failed: {exc}")
    if out.returncode != 0:
        return bad(f"ssh or python failed: {(out.stderr or out.stdout).strip()[-300:]}")
    theirs = tuple(out.stdout.split()[:2])
    if theirs != mine:
        return bad(f"mlx {' / mlx-lm '.join(theirs)} there, {' / '.join(mine)} here: install the same versions")
    return HostCheck(rank, host.ssh, True, f"reachable over SSH, mlx {theirs[0]}, mlx-lm {theirs[1]}")


def ring_on_loopback(size: int, timeout: float = 60.0) -> str | None:
    """Join `size` local ranks in a ring and all_sum once: None when it works, else what failed."""
    ports = []
    for _ in range(size):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    with tempfile.TemporaryDirectory() as tmp:
        hostfile = Path(tmp) / "hosts.json"
        hostfile.write_text(json.dumps([[f"127.0.0.1:{p}"] for p in ports]))
        env = {**os.environ, "MLX_HOSTFILE": str(hostfile)}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", RING_SCRIPT],
                env={**env, "MLX_RANK": str(r)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for r in range(size)
        ]
        problems = []
        for rank, proc in enumerate(procs):
            try:
                out, errs = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                problems.append(f"rank {rank} timed out")
                continue
            if proc.returncode != 0 or out.strip() != f"{float(size)}":
                problems.append(f"rank {rank}: {(errs or out).strip()[-200:]}")
        return "; ".join(problems) or None


def check(hostfile: Path, backend: str) -> tuple[list[HostCheck], list[str]]:
    """Per-host results, then problems of the whole group (the backend on this platform, a ring test)."""
    hosts = read_hostfile(hostfile)
    raw = json.loads(hostfile.read_text())
    results = [check_host(i, h, backend, raw[i].get("rdma")) for i, h in enumerate(hosts)]
    group: list[str] = []
    if backend == "jaccl" and platform.system() != "Darwin":
        group.append("jaccl (RDMA over Thunderbolt 5) runs on macOS only; use ring here")
    if backend == "ring" and len(hosts) > 1 and all(h.local for h in hosts) and all(r.ok for r in results):
        failed = ring_on_loopback(len(hosts))
        if failed is not None:
            group.append(f"a {len(hosts)}-rank ring on loopback failed: {failed}")
    return results, group
