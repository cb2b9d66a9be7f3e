#!/usr/bin/env bash
# Install MLX Manager into ./.venv. With --dev: test tools too. Without: also fetch the embedded default model.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1

# On Linux the mlx CPU wheel links a slow reference BLAS; the system OpenBLAS makes float32 matmuls ~40x faster.
# opencv-python (an mlx-vlm dependency, imported by a few of its models) needs libGL and GLib to import.
if [ "$(uname -s)" = "Linux" ] && command -v apt-get >/dev/null 2>&1; then
  libs=$(ldconfig -p 2>/dev/null || true)
  missing=""
  grep -q libopenblas.so.0 <<<"$libs" || missing="$missing libopenblas0-pthread"
  grep -q libGL.so.1 <<<"$libs" || missing="$missing libgl1"
  grep -q libgthread-2.0.so.0 <<<"$libs" || missing="$missing libglib2.0-0"
  # The web UI is built with Node; its end-to-end tests drive the system Chromium (Playwright never downloads one).
  command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
  [ "$dev" = 1 ] && ! command -v chromium >/dev/null 2>&1 && missing="$missing chromium"
  # The speech round-trip test has espeak-ng say a sentence for a real Whisper to transcribe.
  [ "$dev" = 1 ] && ! command -v espeak-ng >/dev/null 2>&1 && missing="$missing espeak-ng"
  if [ -n "$missing" ]; then
    sudo=""
    [ "$(id -u)" = "0" ] || sudo="sudo"
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
  fi
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: MLX Manager needs Python >= 3.11 (found $("$python" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
if [ "$dev" = 1 ]; then
  .venv/bin/pip install -q -e ".[dev]"
else
  .venv/bin/pip install -q -e .
  .venv/bin/mlx-manager setup
fi

# The web UI (ui/, SvelteKit) is built into src/mlx_manager/web, which the server serves at /.
if command -v npm >/dev/null 2>&1; then
  (
    cd ui
    # install again only when package-lock.json changed since the last install
    if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
      # npm install, not npm ci: the registry mirror lacks some platforms' optional packages (rollup), which npm
      # leaves out of the lock file and npm ci then refuses; npm install keeps the locked versions otherwise.
      PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error
    fi
    npm run build --silent >/dev/null
  )
else
  echo "warning: Node.js (npm) not found: the web UI is not built; / will say how to build it" >&2
fi
