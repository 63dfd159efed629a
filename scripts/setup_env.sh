# Sourced by runme.sh, scripts/iab.sh and scripts/run_tests.sh: sets PYTHON to an interpreter
# with the packages and this project installed (editable: importable from any folder, and the
# `panns-transfer` command). In order: $PYTHON when it is set and has the packages (a test
# passes the interpreter running it), python3 when it has both, else a .venv in the repository
# (made once; the project installed into it when it is not).
REQUIRED_MODULES="torch, torchlibrosa, librosa, h5py, sklearn, matplotlib, soundfile, soxr, tqdm, iterstrat, tensorboard, onnx, onnxruntime, pytest, pytest_timeout, xdist"
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

has_packages() { [ -n "$1" ] && "$1" -c "import $REQUIRED_MODULES" 2>/dev/null; }
# this checkout, importable from another folder
installed_here() {
    [ "$(cd / && "$1" -c 'import os, pytorch; print(os.path.dirname(os.path.dirname(pytorch.__file__)))' 2>/dev/null)" = "$REPO_DIR" ]
}

if has_packages "${PYTHON:-}"; then
    :
elif has_packages python3 && installed_here python3; then
    PYTHON=python3
else
    PYTHON="$REPO_DIR/.venv/bin/python"
    if ! has_packages "$PYTHON"; then
        echo "Setting up $REPO_DIR/.venv (one time, a few minutes)..."
        python3 -m venv "$REPO_DIR/.venv"
        # One resolver pass (a second costs ~20 s). requirements.txt pins torch==2.13.0, the CPU
        # wheel here; a looser pin downloads CUDA builds.
        # --no-compile: bytecode for the modules imported, when first imported, not for every
        # file of every package up front (torch alone has thousands).
        "$PYTHON" -m pip install -q --disable-pip-version-check --no-compile \
            -r "$REPO_DIR/requirements.txt"
    fi
    if ! installed_here "$PYTHON"; then  # pyproject.toml; its packages are in already
        "$PYTHON" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
            -e "$REPO_DIR"
    fi
fi
export PYTHON
# The packages were installed without bytecode (--no-compile above): it is written as modules are
# first imported. With PYTHONDONTWRITEBYTECODE set (some machines set it globally) it never is, and
# every process (each step of runme.sh, each test's subprocess) compiled torch from source again:
# the suite took 14 min from a fresh clone against 9 with bytecode. Writing it under this
# project's commands lands in .venv and in git-ignored __pycache__ folders.
unset PYTHONDONTWRITEBYTECODE
