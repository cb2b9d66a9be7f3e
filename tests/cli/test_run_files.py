"""The PID and run files (issue #12, finding 10): SIGTERM removes them, and a recycled pid, whatever its
arguments say, is never taken for the server (so `stop` never signals it)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from mlx_manager.testing.server import run_server, server_env


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlx_manager", *args], env=server_env(home), capture_output=True, text=True, timeout=60
    )


def test_sigterm_removes_the_pid_and_run_files(tmp_path: Path, tiny_models_dir: Path) -> None:
    state = tmp_path / "state"
    with run_server(tmp_path, ["--model-dir", str(tiny_models_dir)]) as srv:
        run = json.loads((state / "server.json").read_text())
        assert int((state / "server.pid").read_text()) == srv.proc.pid == run["pid"]
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(30) == -signal.SIGTERM  # still ends as a SIGTERM'd process does
    assert not (state / "server.pid").exists() and not (state / "server.json").exists()


def test_a_recycled_pid_with_mlx_manager_in_its_arguments_is_not_the_server(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(parents=True)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "mlx-manager", "serve"])
    try:
        started = psutil.Process(stranger.pid).create_time()
        for run_file in (
            # What a server that crashed left, before its pid went to the stranger: another start time.
            {"pid": stranger.pid, "host": "127.0.0.1", "port": 1, "started_at": 1.0, "process_started": started - 60},
            # An older version's run file, without the start time.
            {"pid": stranger.pid, "host": "127.0.0.1", "port": 1, "started_at": 1.0},
        ):
            (state / "server.pid").write_text(f"{stranger.pid}\n")
            (state / "server.json").write_text(json.dumps(run_file))
            stopped = cli(tmp_path, "stop")
            assert stopped.returncode == 0 and "not running" in stopped.stdout, stopped.stdout + stopped.stderr
            assert stranger.poll() is None  # never signalled
            assert not (state / "server.pid").exists()  # a stale file is cleared
            status = cli(tmp_path, "status")
            assert status.returncode == 3
        time.sleep(0.1)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait(10)
