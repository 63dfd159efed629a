# Sourced by runme.sh, scripts/iab.sh and scripts/run_tests.sh: sets PYTHON to an interpreter
# with the packages. In order: $PYTHON when it is set and has them (a test passes the
# interpreter running it), python3 as it is, else a .venv in the repository (made once).
REQUIRED_MODULES="torch, torchlibrosa, librosa, h5py, sklearn, matplotlib, soundfile, soxr, tqdm, iterstrat, tensorboard, onnx, onnxruntime, pytest"
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

has_packages() { [ -n "$1" ] && "$1" -c "import $REQUIRED_MODULES" 2>/dev/null; }

if has_packages "${PYTHON:-}"; then
    :
elif has_packages python3; then
    PYTHON=python3
else
    PYTHON="$REPO_DIR/.venv/bin/python"
    if ! has_packages "$PYTHON"; then
        echo "Setting up $REPO_DIR/.venv (one time, a few minutes)..."
        python3 -m venv "$REPO_DIR/.venv"
        # One resolver pass (a second costs ~20 s). requirements.txt pins torch==2.13.0, the CPU
        # wheel here; a looser pin downloads CUDA builds.
        "$PYTHON" -m pip install -q --disable-pip-version-check -r "$REPO_DIR/requirements.txt"
    fi
fi
export PYTHON
