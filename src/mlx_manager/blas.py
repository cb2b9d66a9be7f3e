"""Use the system OpenBLAS on Linux: the mlx CPU wheel links a slow reference BLAS (~40x slower matmuls).

The library must be preloaded before the process starts, so the server re-executes itself once with
LD_PRELOAD set. Nothing here imports mlx.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
)
MARKER = "MLX_MANAGER_OPENBLAS"
# OpenBLAS's idle threads spin ~0.1 s after each call by default (2^28 cycles); 2^4 puts them to sleep at once,
# so the cores are free for the NumPy attention threads between MLX's matmuls (engine/cpu_kernels.py).
TIMEOUT_VARIABLE, TIMEOUT = "OPENBLAS_THREAD_TIMEOUT", "4"


def find_openblas() -> str | None:
    for candidate in CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return None


def openblas_active() -> str | None:
    """The preloaded OpenBLAS path, if this process runs with it."""
    preload = os.environ.get("LD_PRELOAD", "")
    return next((p for p in preload.split(":") if "openblas" in p), None)


def reexec_with_openblas(enabled: bool) -> None:
    """Replace this process with one that preloads OpenBLAS, its threads told not to spin; returns if not needed
    or not possible."""
    if not enabled or not sys.platform.startswith("linux") or os.environ.get(MARKER):
        return
    active = openblas_active()
    if active and os.environ.get(TIMEOUT_VARIABLE):
        return
    lib = active or find_openblas()
    if lib is None:
        return
    env = dict(os.environ)
    if not active:
        env["LD_PRELOAD"] = ":".join(p for p in (lib, env.get("LD_PRELOAD", "")) if p)
    env[TIMEOUT_VARIABLE] = env.get(TIMEOUT_VARIABLE) or TIMEOUT
    env[MARKER] = "1"
    os.execve(sys.executable, [sys.executable, "-m", "mlx_manager", *sys.argv[1:]], env)


def describe() -> str:
    if not sys.platform.startswith("linux"):
        return "Accelerate/Metal (macOS)"
    active = openblas_active()
    if active:
        timeout = os.environ.get(TIMEOUT_VARIABLE)
        return f"system OpenBLAS ({active}; " + (
            f"idle threads sleep: {TIMEOUT_VARIABLE}={timeout})" if timeout else "idle threads spin)"
        )
    if find_openblas() is None:
        return "mlx's bundled reference BLAS (slow; install libopenblas0-pthread for ~40x faster float32 matmuls)"
    return "mlx's bundled reference BLAS (OpenBLAS disabled by setting)"
