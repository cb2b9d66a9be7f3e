"""The server's side of a distributed model: it starts every rank (worker.py), on this machine as a process or
on another host over `ssh` as mlx.launch does, talks to rank 0 (always here) over a loopback socket, and watches
them all: a rank that exits or a step that stalls fails the request in flight
with a 503 naming the rank, and the model stays unavailable until it is restarted."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import select
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mlx_manager.engine import cpu_kernels
from mlx_manager.engine.cpu_kernels import KERNELS_VARIABLE
from mlx_manager.engine.errors import ModelLoadError, ModelUnavailableError

log = logging.getLogger(__name__)
Strategy = Literal["tensor", "pipeline"]
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class Host:
    """One line of an mlx.launch hostfile: where to start a rank (ssh), the IPs the ranks connect on, and
    (our extension) the Python to run it with there."""

    ssh: str
    ips: tuple[str, ...] = ()
    python: str | None = None

    @property
    def local(self) -> bool:
        """This machine: started as a process; any other host is started over ssh."""
        return self.ssh in LOCAL_HOSTS or self.ssh in _this_machine()


@functools.cache
def _this_machine() -> tuple[str, str]:
    """This machine's names (getfqdn may ask DNS: once per process)."""
    return socket.gethostname(), socket.getfqdn()


@dataclass(frozen=True)
class DistributedSpec:
    id: str
    path: str
    hosts: tuple[Host, ...]
    strategy: Strategy = "tensor"
    backend: Literal["ring", "jaccl"] = "ring"
    # A step (the prompt's prefill included) that takes longer means a rank hangs.
    step_timeout_seconds: float = 30.0
    # For ranks on other hosts: the Python there (a host's own "python" wins; default: this server's path),
    # environment variables for every rank, and the ring's first port (rank r listens on ring_port + r).
    python: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    ring_port: int = 32323
    ssh_timeout_seconds: int = 10


def read_hostfile(path: str | Path) -> tuple[Host, ...]:
    """mlx.launch's JSON hostfile: [{"ssh": "host", "ips": ["10.0.0.1"]}, ...], one entry per rank."""
    entries = json.loads(Path(path).read_text())
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: a hostfile is a JSON list with one {{'ssh': ..., 'ips': [...]}} per rank")
    hosts = tuple(
        Host(str(e["ssh"]), tuple(str(ip) for ip in e.get("ips", [])), e.get("python") and str(e["python"]))
        for e in entries
    )
    for host in hosts:  # ssh would read "-oProxyCommand=..." as an option and run it
        if not host.ssh or host.ssh.startswith("-") or any(c.isspace() or not c.isprintable() for c in host.ssh):
            raise ValueError(f"{path}: '{host.ssh}' is not a host name ssh can be given")
    return hosts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Request:
    on_message: Callable[[dict[str, Any]], None]
    on_error: Callable[[BaseException], None]


class RankGroup:
    """The processes of one distributed model; `start` blocks until every rank has loaded its shard."""

    def __init__(self, spec: DistributedSpec, start_timeout: float = 120.0) -> None:
        self.spec = spec
        self.start_timeout = start_timeout
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ranks: list[dict[str, Any]] = []  # per rank: the weight and active bytes it reported
        self.error: str | None = None  # why it is unavailable
        self._conn: socket.socket | None = None
        self._lock = threading.Lock()
        self._active: dict[str, _Request] = {}
        self._stopping = False
        self._progress = time.monotonic()  # the last message from rank 0 (requests run one at a time, in order)
        self.started_at = time.time()
        self.load_seconds = 0.0
        self.logs = Path(tempfile.mkdtemp(prefix=f"mlx-dist-{spec.id[-16:].replace('/', '-')}-"))

    @property
    def available(self) -> bool:
        return self._conn is not None and self.error is None

    def start(self) -> None:
        hosts, spec = self.spec.hosts, self.spec
        if not hosts[0].local:
            raise ModelLoadError(
                f"'{spec.id}': rank 0 runs in this server, so the hostfile's first host must be this machine"
                f" (localhost or {socket.gethostname()}), not '{hosts[0].ssh}'."
            )
        remote = any(not h.local for h in hosts)
        size, port = len(hosts), _free_port()
        kernels = "numpy" if cpu_kernels.installed() else "mlx"  # as this server runs them (engine/cpu_kernels)
        env = {**os.environ, KERNELS_VARIABLE: kernels, **dict(spec.env), "MLX_DISTRIBUTED_BACKEND": spec.backend}
        env.pop("MLX_HOSTFILE", None)
        if size > 1:
            ring = [
                [f"{self._ring_ip(r, h, remote)}:{spec.ring_port + r if remote else _free_port()}"]
                for r, h in enumerate(hosts)
            ]
            (self.logs / "hosts.json").write_text(json.dumps(ring))
            env["MLX_HOSTFILE"] = str(self.logs / "hosts.json")
            # rank 0 wakes the others for each request (worker.Wake), on the address they reach it at
            env["MLX_MANAGER_WAKE"] = f"{ring[0][0].rsplit(':', 1)[0]}:{_free_port()}"
        module = ["-m", "mlx_manager.engine.distributed.worker", spec.path, spec.strategy, str(port)]
        for rank, host in enumerate(hosts):
            log_file = (self.logs / f"rank{rank}.log").open("wb")
            if host.local:
                rank_env = {**env, "MLX_RANK": str(rank), "MLX_MANAGER_HEARTBEAT": str(self.logs / f"rank{rank}.alive")}
                self.procs.append(
                    subprocess.Popen([sys.executable, *module], env=rank_env, stdout=log_file, stderr=log_file)
                )
                continue
            # Over ssh the heartbeat comes back on stdout, into the same .alive file (its mtime is what counts).
            beat = (self.logs / f"rank{rank}.alive").open("wb")
            try:
                self.procs.append(subprocess.Popen(self._ssh(rank, host, env, module), stdout=beat, stderr=log_file))
            except OSError as exc:
                self.stop()
                raise ModelLoadError(f"'{spec.id}': rank {rank} on host '{host.ssh}': cannot run ssh ({exc})") from exc
        try:
            self._connect(port)
        except BaseException:
            self.stop()
            raise
        self.load_seconds = time.time() - self.started_at
        threading.Thread(target=self._read, daemon=True, name=f"dist-read-{self.spec.id[-16:]}").start()
        threading.Thread(target=self._watch, daemon=True, name=f"dist-watch-{self.spec.id[-16:]}").start()

    def _ring_ip(self, rank: int, host: Host, remote: bool) -> str:
        if not remote:
            return "127.0.0.1"
        if not host.ips:
            raise ModelLoadError(f"'{self.spec.id}': rank {rank} on host '{host.ssh}' has no 'ips' for the ring")
        return host.ips[0]

    def _ssh(self, rank: int, host: Host, env: dict[str, str], module: list[str]) -> list[str]:
        """`ssh HOST 'env K=V ... PYTHON -m worker ...'`: the variables a rank needs travel in the command, since
        ssh passes no environment; the ring's hostfile travels as text (MLX_MANAGER_HOSTS)."""
        names = ("MLX_DISTRIBUTED_BACKEND", "MLX_MANAGER_WAKE", KERNELS_VARIABLE)
        passed: dict[str, str] = {k: env[k] for k in names if k in env}
        hostfile = (self.logs / "hosts.json").read_text()
        variables: dict[str, str] = {
            **dict(self.spec.env),
            **passed,
            "MLX_RANK": str(rank),
            "MLX_MANAGER_HOSTS": hostfile,
            "MLX_MANAGER_HEARTBEAT": "-",
        }
        python = host.python or self.spec.python or sys.executable
        command = shlex.join(["env", *(f"{k}={v}" for k, v in variables.items()), python, *module])
        timeout = f"ConnectTimeout={self.spec.ssh_timeout_seconds}"
        return ["ssh", "-o", "BatchMode=yes", "-o", timeout, host.ssh, command]

    def _connect(self, port: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            dead = self._dead_rank()
            if dead is not None:
                raise ModelLoadError(f"'{self.spec.id}' could not start: {dead}")
            if time.monotonic() > deadline:
                raise ModelLoadError(f"'{self.spec.id}': the ranks did not load within {self.start_timeout:.0f}s")
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=1.0)
                break
            except OSError:
                time.sleep(0.1)
        conn.settimeout(None)
        reader = conn.makefile("r", encoding="utf-8")
        # The ready line comes once every rank has loaded; a rank may die meanwhile (a timed-out read would spoil
        # the file object, so wait with select).
        while not select.select([conn], [], [], 0.5)[0]:
            dead = self._dead_rank()
            if dead is not None or time.monotonic() > deadline:
                conn.close()
                raise ModelLoadError(f"'{self.spec.id}' could not start: {dead or 'timed out loading'}")
        line = reader.readline()
        if not line:
            raise ModelLoadError(f"'{self.spec.id}' could not start: {self._dead_rank() or 'rank 0 closed'}")
        self.ranks = json.loads(line)["ranks"]
        self._reader = reader
        self._conn = conn

    def _dead_rank(self) -> str | None:
        for rank, proc in enumerate(self.procs):
            code = proc.poll()
            if code is not None:
                tail = (self.logs / f"rank{rank}.log").read_text(errors="replace").strip().splitlines()[-1:]
                why = f" ({tail[0][:300]})" if tail else ""
                host = self.spec.hosts[rank]
                if host.local:
                    return f"rank {rank} exited with code {code}{why}"
                if code == 255:  # ssh's own failure: the host cannot be reached or refused us
                    return f"rank {rank} on host '{host.ssh}': ssh failed (exit 255){why}"
                return f"rank {rank} on host '{host.ssh}' exited with code {code}{why}"
        return None

    def _read(self) -> None:
        for line in self._reader:
            msg = json.loads(line)
            with self._lock:
                self._progress = time.monotonic()
                req = self._active.get(msg["id"])
                if req is not None and "done" in msg:
                    self._active.pop(msg["id"], None)
            if req is not None:
                req.on_message(msg)

    def _watch(self) -> None:
        while not self._stopping and self.error is None:
            time.sleep(0.2)
            problem = self._dead_rank()
            now = time.monotonic()
            with self._lock:
                stalled = bool(self._active) and now - self._progress > self.spec.step_timeout_seconds
            if problem is None and stalled:
                problem = f"no step finished in {self.spec.step_timeout_seconds:g}s ({self._silent_ranks()})"
            if problem is not None and not self._stopping:
                self._fail(problem)

    def _silent_ranks(self) -> str:
        """Which ranks stopped answering (their heartbeat, a thread of their own, is stale)."""
        now = time.time()
        silent = []
        for rank in range(len(self.procs)):
            beat = self.logs / f"rank{rank}.alive"
            if not beat.exists() or now - beat.stat().st_mtime > 3.0:
                silent.append(str(rank))
        if not silent:
            return "every rank is alive: a collective step is stuck"
        return ("rank " if len(silent) == 1 else "ranks ") + ", ".join(silent) + " stopped responding"

    def _fail(self, problem: str) -> None:
        self.error = problem
        log.error("Distributed model %s is unavailable: %s", self.spec.id, problem)
        with self._lock:
            failed, self._active = list(self._active.values()), {}
        for req in failed:
            req.on_error(self.unavailable())
        self.stop()

    def unavailable(self) -> ModelUnavailableError:
        return ModelUnavailableError(
            f"The distributed model '{self.spec.id}' is unavailable: {self.error or 'not started'}. An admin can"
            " restart it (POST /admin/distributed/{model}/restart)."
        )

    def submit(
        self,
        payload: dict[str, Any],
        on_message: Callable[[dict[str, Any]], None],
        on_error: Callable[[BaseException], None],
    ) -> str:
        if not self.available or self._conn is None:
            raise self.unavailable()
        rid = uuid.uuid4().hex
        with self._lock:
            if not self._active:
                self._progress = time.monotonic()
            self._active[rid] = _Request(on_message, on_error)
        self._send({**payload, "id": rid})
        return rid

    def cancel(self, rid: str) -> None:
        if self.available:
            self._send({"cancel": rid})

    def _send(self, msg: dict[str, Any]) -> None:
        assert self._conn is not None
        try:
            self._conn.sendall((json.dumps(msg) + "\n").encode())
        except OSError as exc:
            self._fail(f"rank 0 closed its connection ({exc})")

    def stop(self) -> None:
        self._stopping = True
        with self._lock:  # a request still running (a restart or unload meanwhile) ends with a 503, never hangs
            ended, self._active = list(self._active.values()), {}
        for req in ended:
            req.on_error(ModelUnavailableError(f"'{self.spec.id}' was stopped while this request ran; retry."))
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.warning("A rank of %s did not exit (pid %s)", self.spec.id, proc.pid)
