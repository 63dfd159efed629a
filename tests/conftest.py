"""Make `utils` (repo root) and the modules in pytorch/ importable; fixtures shared by the tests."""
import os
import sys

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (REPO_DIR, os.path.join(REPO_DIR, "pytorch")):
    if path not in sys.path:
        sys.path.insert(0, path)


import pytest  # noqa: E402

from helpers import make_class_folders  # noqa: E402
from utils.features import one_hot, pack_to_hdf5, scan_class_folders  # noqa: E402


@pytest.fixture(scope="session")
def features(tmp_path_factory):
    """A packed single-label HDF5: 3 classes of pitched tones, 10 clips of 1 s each."""
    root = tmp_path_factory.mktemp("tones")
    make_class_folders(root / "data", classes=("high", "low", "mid"), clips_per_class=10,
                       seconds=1.0)
    labels, found = scan_class_folders(str(root / "data"))
    items = [(name, path, one_hot(index, len(labels))) for name, path, index in found]
    path = str(root / "waveform.h5")
    pack_to_hdf5(items, labels, "single_label", path, clip_duration=1.0)
    return path
