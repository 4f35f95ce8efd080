#!/usr/bin/env bash
# Entry point for `make bench`: install/check the tools (idempotent), then run the harness
# with the bench venv's Python (for psutil). All arguments go to bench/run.py, e.g.
#   bench/run.sh --quick --only asgi-hello,static-1k
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$BENCH_DIR/.."
bash "$BENCH_DIR/setup.sh" </dev/null
exec "$BENCH_DIR/.venv/bin/python" "$BENCH_DIR/run.py" "$@"
