#!/usr/bin/env bash
# The test suite on the CPU, one worker process per core (pytest-xdist), each test with a time
# limit (pytest.ini); sets up the Python environment first when packages are missing. Extra
# arguments go to pytest (e.g. -m "not slow" for the quick tier, -n 0 for one process).
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
cd "$REPO_DIR"
# hearvalidator (a 20 KB wheel) for tests/test_hear.py: its 2021.0.6 pins an older Python and
# TensorFlow it does not need for torch modules, hence --no-deps --ignore-requires-python. A
# machine that cannot fetch it skips that one test.
"$PYTHON" -c "import hearvalidator" 2>/dev/null || "$PYTHON" -m pip install -q --no-deps \
    --ignore-requires-python hearvalidator==2021.0.6 2>/dev/null || \
    echo "note: hearvalidator could not be installed; its test is skipped" >&2
"$PYTHON" -m pytest -q -n auto --durations=15 tests "$@"
