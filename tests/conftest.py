"""Fixtures shared by the tests (pytest.ini puts the repository root and tests/ on the path)."""
import pytest

from helpers import make_class_folders
from utils.features import one_hot, pack_to_hdf5, scan_class_folders


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
