#!/usr/bin/env bash
# Run the whole pipeline on generated bench photos, with no server at all:
# SQLite database, filesystem broker and result backend, local storage (under var/demo).
# Usage: ./scripts/demo.sh [--photos N] [--json]
source "$(dirname "$0")/_venv.sh" demo ""
exec "$VENV_PY" -m app demo "$@"
