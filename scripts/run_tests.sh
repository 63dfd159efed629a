#!/usr/bin/env bash
# The test suite on the CPU; sets up the Python environment first when packages are missing.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
cd "$REPO_DIR"
"$PYTHON" -m pytest -q tests "$@"
