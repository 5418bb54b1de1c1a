#!/usr/bin/env bash
# The convergence property with many more histories than the suite runs (both databases).
set -euo pipefail
cd "$(dirname "$0")/.."
CONVERGENCE_EXAMPLES="${CONVERGENCE_EXAMPLES:-200}" exec .venv/bin/python -m pytest \
  tests/sync/test_convergence.py -q -p no:cacheprovider "$@"
