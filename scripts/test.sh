#!/usr/bin/env bash
# Install everything the tests need, then run lint, type checks and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh --dev

# The web UI from source (install.sh has built it): ESLint, svelte-check and the Vitest unit tests, before
# LD_PRELOAD below (Node must not load OpenBLAS) and before pytest's end-to-end tests drive the build.
(cd ui && npm run --silent lint && npm run --silent check && npm run --silent test:unit)

for lib in /usr/lib/x86_64-linux-gnu/libopenblas.so.0 /usr/lib/aarch64-linux-gnu/libopenblas.so.0; do
  if [ -e "$lib" ]; then export LD_PRELOAD="$lib"; break; fi
done
export HF_HUB_OFFLINE=1
export OPENBLAS_THREAD_TIMEOUT=4  # as the server sets for itself (mlx_manager/blas.py): no re-exec per test server

.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/mypy
.venv/bin/pytest -q "$@"
