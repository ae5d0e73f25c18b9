#!/usr/bin/env bash
# All tests, in the order a failure is cheapest to find. Called by `make test` (and CI).
set -euo pipefail
cd "$(dirname "$0")/.."
export RASA_TELEMETRY_ENABLED=false PYTHONPATH="$PWD" TF_CPP_MIN_LOG_LEVEL=2
PY=.venv/bin/python

echo "== rasa data validate --fail-on-warnings (as make validate)"
.venv/bin/rasa data validate --fail-on-warnings --quiet

echo "== pytest: unit, integration (SQLite + PostgreSQL), end-to-end conversations"
$PY -m pytest tests -p no:cacheprovider -q "$@"
