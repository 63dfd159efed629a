"""Full disks for real: small tmpfs mounts (root only; skipped elsewhere) under the run's
folders. torch reports a full disk during a save as a RuntimeError, not an OSError; these tests
let it."""
import os
import shutil
import subprocess

import pytest

from helpers import run_dir, visible_files
from pytorch import checkpoints as checkpoint_files, main as main_script
from pytorch.run_setup import checkpoint_bytes
from pytorch.models import create_model
from utils.utilities import UsageError

AUDIO = dict(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000)
COMMON = ["--model_type=Transfer_Cnn6", "--batch_size=4", "--num_workers=0", "--holdout_fold=1",
          "--augmentation=none", "--no_spec_augment", "--eval_every=100"]

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    """mount(size_bytes, folder): a tmpfs of that size at `folder`, unmounted afterwards."""
    mounted = []

    def mount(size_bytes, folder):
        os.makedirs(folder, exist_ok=True)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs",
                                 str(folder)], capture_output=True, text=True)
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}): needs root")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill_disk(path, block=2**20):
    """Write zeros to `path` until the disk is full (unbuffered: the last write fails here)."""
    with open(path, "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * block)
        except OSError:  # ENOSPC
            pass


def one_checkpoint_bytes():
    model = create_model("Transfer_Cnn6", **AUDIO, classes_num=3)
    return checkpoint_bytes(model)


def train(workspace, features, *extra):
    main_script.main(["train", f"--workspace={workspace}", f"--features={features}", *COMMON,
                      *extra])


def test_room_for_every_checkpoint_the_run_writes_is_checked_first(tmp_path, features, small_disk):
    # Room for two checkpoints, but --save_every=5 to --stop_iteration=15 writes three.
    small_disk(int(2.5 * one_checkpoint_bytes()), tmp_path / "checkpoints")
    with pytest.raises(UsageError, match=r"needed for the 3 checkpoints this run writes"):
        train(tmp_path, features, "--save_every=5", "--stop_iteration=15")
    assert not os.path.exists(os.path.join(run_dir(tmp_path, "statistics", augmentation="none"),
                                           "statistics.pickle"))


def test_a_disk_that_fills_during_a_save_loses_nothing(tmp_path, features, small_disk,
                                                        monkeypatch, capsys):
    """The pre-flight passes; then another writer fills the disk before the second save."""
    folder = small_disk(int(3.5 * one_checkpoint_bytes()), tmp_path / "checkpoints")
    real_save = checkpoint_files.save_checkpoint_file

    def save_after_the_disk_filled(checkpoint, path):
        if checkpoint["iteration"] == 4:
            fill_disk(os.path.join(folder, "filler"))
        real_save(checkpoint, path)  # torch.save itself meets the full disk
    monkeypatch.setattr(checkpoint_files, "save_checkpoint_file", save_after_the_disk_filled)
    with pytest.raises(UsageError, match=r"final checkpoint could not be saved .*No space left on "
                                         r"device.*last good one is .*2_iterations.pth"):
        train(tmp_path, features, "--save_every=2", "--stop_iteration=4")
    checkpoints = run_dir(tmp_path, "checkpoints", augmentation="none")
    assert visible_files(checkpoints) == ["2_iterations.pth"]  # no half-written file left
    assert not [name for name in os.listdir(checkpoints) if name.endswith(".tmp")]


def test_a_full_statistics_disk_is_one_line_naming_the_file(tmp_path, features, small_disk):
    """The statistics folder fills while training: one line, exit 2, naming the file."""
    import sys
    from helpers import REPO_DIR
    statistics = small_disk(64 * 1024, tmp_path / "statistics")
    filler = os.path.join(statistics, "filler")
    fill_disk(filler, block=4096)
    os.truncate(filler, os.path.getsize(filler) - 4096)  # room for run.json, not for more
    result = subprocess.run([sys.executable, os.path.join(REPO_DIR, "pytorch", "main.py"), "train",
                             f"--workspace={tmp_path}", f"--features={features}", *COMMON,
                             "--stop_iteration=2", "--save_every=2", "--eval_every=1"],
                            capture_output=True, text=True, cwd=REPO_DIR)
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert last.startswith("error: ") and "statistics" in last and "No space left" in last


def test_a_disk_that_fills_while_packing_keeps_what_is_packed_and_continues(tmp_path, small_disk):
    """Another writer fills the disk once the packer's partial HDF5 appears: exit 2, one line
    saying what is kept, no segfault. Once space is freed, the same command
    continues the pack and the file equals one packed without a fault."""
    import sys
    import time
    import h5py
    import numpy as np
    from helpers import REPO_DIR, make_class_folders
    data = make_class_folders(str(tmp_path / "data"), clips_per_class=20, seconds=30.0)
    features = small_disk(90 * 2**20, tmp_path / "ws" / "features")  # the pre-flight passes
    command = [sys.executable, os.path.join(REPO_DIR, "utils", "features.py"),
               "pack_audio_files_to_hdf5", f"--dataset_dir={data}", f"--workspace={tmp_path / 'ws'}",
               "--clip_duration=30",
               # in-process decoding: before HDF5's chunk cache was turned off for packing, one
               # run with a worker pool hung while stopping the pool (docs/reliability.md); with
               # workers it has passed 4 of 4 since, but this test must not depend on that
               "--num_workers=0"]
    packer = subprocess.Popen(command, cwd=REPO_DIR, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(name.endswith(".partial") for name in os.listdir(features)):
        time.sleep(0.05)
    fill_disk(os.path.join(features, "filler"))
    try:
        _, stderr = packer.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        packer.kill()
        raise
    assert packer.returncode == 2, stderr[-3000:]
    assert "Traceback" not in stderr and "leaked semaphore" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors == [stderr.strip().splitlines()[-1]]
    assert f"{features}/waveform.h5: No space left on device while packing: " in errors[0]
    assert "free space and run the same command again to continue" in errors[0]
    # the failed report is written where the last bytes allow it, and the line says which
    failed_report = ["waveform_failed_report.tsv"] * os.path.exists(
        os.path.join(features, "waveform_failed_report.tsv"))
    assert ("(report: not written either (No space left on device))" in errors[0]) != \
        bool(failed_report)
    assert sorted(os.listdir(features)) == [".waveform.h5.lock", ".waveform.h5.partial",
                                            ".waveform.h5.progress", "filler"] + failed_report
    logged = len(open(os.path.join(features, ".waveform.h5.progress")).read().splitlines()) - 1
    assert 0 <= logged < 40  # the clips written before the disk filled (none if it filled first)

    os.remove(os.path.join(features, "filler"))
    # Space for the clips still to pack, less than the whole file: the rerun counts only the
    # rest (it asked for the whole file, so a pack stopped late could never continue).
    held = os.stat(os.path.join(features, ".waveform.h5.partial")).st_blocks * 512
    whole = int(1.05 * 40 * 30 * 32000 * 2) + 2**20
    if held > 16 * 2**20:
        with open(os.path.join(features, "filler"), "wb") as filler:
            filler.write(b"\0" * (shutil.disk_usage(features).free - (whole - held) - 12 * 2**20))
        assert shutil.disk_usage(features).free < whole
    rerun = subprocess.run(command, cwd=REPO_DIR, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{logged} of 40 clips done before" in rerun.stderr
    assert sorted(os.listdir(features)) == (["filler"] * (held > 16 * 2**20) + ["waveform.h5"]
                                            + failed_report + ["waveform_report.tsv"])
    fresh = tmp_path / "fresh"
    subprocess.run(command[:4] + [f"--workspace={fresh}"] + command[5:], cwd=REPO_DIR, check=True,
                   capture_output=True)
    with h5py.File(os.path.join(features, "waveform.h5"), "r") as resumed, \
            h5py.File(fresh / "features" / "waveform.h5", "r") as whole:
        for name in ("audio_name", "target", "fold", "waveform"):
            assert np.array_equal(resumed[name][:], whole[name][:]), name


def test_the_free_space_check_counts_what_a_stopped_pack_already_holds(tmp_path, small_disk):
    """A pack stopped by a full disk holds part of the file: once space is freed, the check
    asks only for the rest (it asked for the whole file, so a pack that stopped late could not
    continue on the same disk)."""
    from helpers import make_class_folders
    from utils.features import one_hot, pack_to_hdf5, scan_class_folders
    data = make_class_folders(str(tmp_path / "data"), clips_per_class=10, seconds=40.0)
    labels, found = scan_class_folders(data)
    items = [(name, path, one_hot(index, len(labels))) for name, path, index in found]
    whole = 20 * 40 * 32000 * 2  # 48.8 MiB of int16 clips
    disk = small_disk(64 * 2**20, tmp_path / "features")
    with open(disk / ".waveform.h5.partial", "wb") as partial:  # what the stopped pack wrote
        partial.write(os.urandom(36 * 2**20))
    assert shutil.disk_usage(disk).free < 1.05 * whole  # the old check: refused
    pack_to_hdf5(items, labels, "single_label", str(disk / "waveform.h5"), clip_duration=40.0)
    assert sorted(os.listdir(disk)) == ["waveform.h5", "waveform_report.tsv"]


def test_an_int8_export_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, features,
                                                                       small_disk, monkeypatch):
    """Room for the int8 export's intermediate models is checked before quantizing; a disk that
    another writer fills after that check (onnxruntime's quantizer writes its models unchecked,
    then fails to parse the truncated file) is still an ENOSPC naming the output. Either way
    the folder is left as it was."""
    import errno
    from pytorch import quantize

    train(tmp_path, features, "--save_every=2", "--stop_iteration=2")
    checkpoint = os.path.join(run_dir(tmp_path, "checkpoints", augmentation="none"),
                              "2_iterations.pth")

    def export_to(folder, *extra):
        output = os.path.join(folder, "model_int8.onnx" if extra else "model.onnx")
        main_script.main(["export", f"--checkpoint_path={checkpoint}", f"--output={output}",
                          *extra])
        return output
    float_bytes = os.path.getsize(export_to(tmp_path))

    tight = small_disk(int(2.5 * float_bytes), tmp_path / "tight")  # the float copy fits
    with pytest.raises(UsageError, match=r"MiB free, but about \d+ MiB needed for the int8 "
                                         r"export's intermediate models"):
        export_to(tight, "--quantize=int8")
    assert os.listdir(tight) == []

    roomy = small_disk(6 * float_bytes, tmp_path / "roomy")
    real_quantized = quantize.quantized

    def quantized_on_a_filled_disk(*args):
        fill_disk(os.path.join(roomy, "filler"))
        return real_quantized(*args)
    monkeypatch.setattr(quantize, "quantized", quantized_on_a_filled_disk)
    with pytest.raises(OSError) as raised:
        export_to(roomy, "--quantize=int8")
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.filename == os.path.join(roomy, "model_int8.onnx")
    assert os.listdir(roomy) == ["filler"]
