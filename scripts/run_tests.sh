#!/usr/bin/env bash
# The test suite on the CPU, one worker process per core (pytest-xdist), each test with a time
# limit (pytest.ini); sets up the Python environment first when packages are missing. Extra
# arguments go to pytest (e.g. -m "not slow" for the quick tier, -n 0 for one process).
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
cd "$REPO_DIR"
"$PYTHON" -m pytest -q -n auto tests "$@"
