"""Nothing lost, nothing crashes: run identity and locks, pre-flight checks, failed saves, safe
resume, non-finite losses, interrupted cross-validation, one-line file-system errors."""
import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections import namedtuple

import numpy as np
import pytest
import soundfile

from helpers import (REPO_DIR, make_class_folders, nobody_can_run_the_project, run_dir,
                     run_script, visible_files)
from pytorch import checkpoints, losses, main as main_script, train as train_module
from pytorch.inference import find_audio_files
from utils.features import one_hot, pack_to_hdf5, scan_class_folders
from utils.runs import LOCK_FILE
from utils.utilities import UsageError

DiskUsage = namedtuple("DiskUsage", "total used free")
FAST = ["--holdout_fold=1", "--stop_iteration=2", "--eval_every=2", "--save_every=2",
        "--augmentation=none", "--no_spec_augment"]


def train(workspace, features, *extra):
    main_script.main(["train", f"--workspace={workspace}", f"--features={features}",
                      "--model_type=Transfer_Cnn6", "--batch_size=4", "--num_workers=0",
                      "--learning_rate=1e-3", *FAST, *map(str, extra)])


def checkpoints_of(workspace, **kwargs):
    return run_dir(workspace, "checkpoints", augmentation="none", **kwargs)


def statistics_of(workspace, **kwargs):
    return run_dir(workspace, "statistics", augmentation="none", **kwargs)


@pytest.mark.slow
def test_runs_with_other_settings_never_share_a_folder(tmp_path, features):
    train(tmp_path, features)
    with pytest.raises(UsageError, match=r"other settings \(--learning_rate 0.001 -> 0.01\).*--run_name"):
        train(tmp_path, features, "--learning_rate=1e-2")
    train(tmp_path, features, "--learning_rate=1e-2", "--run_name=lr1e-2")
    named = os.path.join(checkpoints_of(tmp_path), "run_name=lr1e-2")
    assert visible_files(named) == ["2_iterations.pth"]
    with open(os.path.join(statistics_of(tmp_path), "run_name=lr1e-2", "run.json")) as f:
        assert json.load(f)["learning_rate"] == 0.01
    with open(os.path.join(statistics_of(tmp_path), "run.json")) as f:
        assert json.load(f)["learning_rate"] == 0.001  # the first run is untouched

    # The same settings again from scratch would overwrite the finished run: refused too.
    with pytest.raises(UsageError, match="already holds this run's checkpoints.*--resume_iteration=2"):
        train(tmp_path, features)


@pytest.mark.slow
def test_a_second_process_on_the_same_run_is_refused_at_once(tmp_path, features):
    folder = checkpoints_of(tmp_path)
    os.makedirs(folder)
    with open(os.path.join(folder, LOCK_FILE), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running trainer holds it
        started = time.time()
        result = run_script("pytorch/main.py", "train", f"--workspace={tmp_path}",
                            f"--features={features}", "--model_type=Transfer_Cnn6",
                            "--batch_size=4", "--num_workers=0", *FAST)
    assert result.returncode == 2 and "another process is training this run" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and time.time() - started < 60
    assert visible_files(statistics_of(tmp_path)) == []  # nothing of the running run touched


def test_outputs_are_checked_before_training(tmp_path, features, monkeypatch):
    # A file where the checkpoints folder belongs.
    blocked = tmp_path / "blocked"
    os.makedirs(os.path.dirname(checkpoints_of(blocked)))
    open(checkpoints_of(blocked), "w").close()
    with pytest.raises(UsageError, match="is a file, not a folder"):
        train(blocked, features)

    # An unwritable folder (root ignores modes, so the write itself is made to fail).
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")
    with monkeypatch.context() as patch:
        patch.setattr("utils.utilities.tempfile.NamedTemporaryFile", refuse)
        with pytest.raises(UsageError, match="not writable.*Permission denied"):
            train(tmp_path / "readonly", features)

    # Too little free space for one checkpoint.
    monkeypatch.setattr("utils.utilities.shutil.disk_usage", lambda path: DiskUsage(10**9, 10**9, 1000))
    with pytest.raises(UsageError, match="MiB free, but about .* MiB needed for a checkpoint"):
        train(tmp_path / "full", features)
    assert not os.path.exists(os.path.join(statistics_of(tmp_path / "full"), "statistics.pickle"))


@pytest.mark.slow
def test_a_failed_save_is_retried_and_a_failed_final_save_names_the_last_good(
        tmp_path, features, monkeypatch, capsys):
    real_save = checkpoints.save_checkpoint_file
    failing = {"2_iterations.pth"}

    def flaky_save(checkpoint, path):
        if os.path.basename(path) in failing:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real_save(checkpoint, path)
    monkeypatch.setattr(checkpoints, "save_checkpoint_file", flaky_save)
    train(tmp_path, features, "--stop_iteration=4", "--save_every=2")
    console = capsys.readouterr().err
    assert "could not save" in console and "No space left" in console
    assert visible_files(checkpoints_of(tmp_path)) == ["4_iterations.pth"]

    failing.clear()
    failing.add("4_iterations.pth")  # the last save only
    with pytest.raises(UsageError, match=r"final checkpoint could not be saved.*last good one is "
                                         r".*2_iterations.pth"):
        train(tmp_path / "two", features, "--stop_iteration=4", "--save_every=2")


@pytest.mark.slow
def test_resume_checks_the_run_still_matches(tmp_path, features, capsys):
    train(tmp_path, features)
    with pytest.raises(UsageError, match=r"--learning_rate 0.001 -> 0.0005"):
        train(tmp_path, features, "--resume_iteration=2", "--learning_rate=5e-4")
    with pytest.raises(UsageError, match=r"--audio .*mel_bins"):
        train(tmp_path, features, "--resume_iteration=2", "--mel_bins=32")

    # Another HDF5 (here: fewer clips, then 16 kHz) is another run, not a continuation.
    for name, sample_rate, flags in (("fewer", 32000, []), ("16k", 16000, ["--fmax=8000"])):
        folders = make_class_folders(str(tmp_path / name), classes=("high", "low", "mid"),
                                     clips_per_class=4, sample_rate=sample_rate)
        labels, found = scan_class_folders(folders)
        other = str(tmp_path / f"{name}.h5")
        pack_to_hdf5([(clip, path, one_hot(index, 3)) for clip, path, index in found], labels,
                     "single_label", other, sample_rate=sample_rate, clip_duration=1.0)
        with pytest.raises(UsageError, match="other settings.*--clips 30 -> 12"):
            train(tmp_path, other, "--resume_iteration=2", *flags)

    # Settings that only say how long or how the run goes may change, and are recorded.
    capsys.readouterr()
    train(tmp_path, features, "--resume_iteration=2", "--stop_iteration=4")
    assert "--stop_iteration 2 -> 4" in capsys.readouterr().err
    with open(os.path.join(statistics_of(tmp_path), "run.json")) as f:
        assert json.load(f)["stop_iteration"] == 4
    assert visible_files(checkpoints_of(tmp_path)) == ["2_iterations.pth", "4_iterations.pth"]


def test_a_non_finite_loss_stops_the_run_without_saving_it(tmp_path, features, monkeypatch):
    def exploding(output, target):
        return (output["clipwise_output"] * float("nan")).sum()
    monkeypatch.setitem(losses.LOSSES, "clip_nll", exploding)
    with pytest.raises(UsageError, match="training loss became nan at iteration 1.*none"):
        train(tmp_path, features)
    assert visible_files(checkpoints_of(tmp_path)) == []


def test_stale_temporaries_of_killed_writers_are_removed(tmp_path, features):
    folder = checkpoints_of(tmp_path)
    os.makedirs(folder)
    stale = os.path.join(folder, ".2_iterations.pth.abc123.tmp")
    open(stale, "wb").write(b"x" * 1000)
    train(tmp_path, features)
    assert not os.path.exists(stale)
    with open(os.path.join(run_dir(tmp_path, "logs", augmentation="none"), "train.log")) as f:
        assert f"removed {stale}, left by an interrupted write" in f.read()


@pytest.mark.slow
def test_sigterm_stops_training_cleanly(tmp_path, features):
    process = subprocess.Popen(
        [sys.executable, os.path.join(REPO_DIR, "pytorch/main.py"), "train",
         f"--workspace={tmp_path}", f"--features={features}", "--model_type=Transfer_Cnn6",
         "--batch_size=4", "--num_workers=0", "--holdout_fold=1", "--stop_iteration=100000",
         "--eval_every=100000", "--save_every=100000"],
        cwd=REPO_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = os.path.join(run_dir(tmp_path, "logs"), "train.log")
    deadline = time.time() + 120
    while time.time() < deadline and not (os.path.exists(log) and "iteration 0:" in open(log).read()):
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    for kind in ("checkpoints", "statistics"):
        assert not [name for name in os.listdir(run_dir(tmp_path, kind)) if name.endswith(".tmp")]


@pytest.mark.slow
def test_all_folds_continue_where_they_stopped(tmp_path, features, monkeypatch, capsys):
    trained = []
    real_train = train_module.train

    def train_until_fold_3(run, *args):
        if run.holdout_fold == 3 and not trained.count(3):
            trained.append(3)
            raise KeyboardInterrupt
        trained.append(run.holdout_fold)
        return real_train(run, *args)
    monkeypatch.setattr(train_module, "train", train_until_fold_3)
    command = ["train", f"--workspace={tmp_path}", f"--features={features}",
               "--model_type=Transfer_Cnn6", "--batch_size=4", "--num_workers=0",
               "--holdout_fold=all", "--stop_iteration=1", "--eval_every=1", "--save_every=1",
               "--augmentation=none", "--no_spec_augment"]
    with pytest.raises(KeyboardInterrupt):
        main_script.main(command)
    assert trained == [1, 2, 3]
    capsys.readouterr()
    main_script.main(command)
    assert trained == [1, 2, 3] + list(range(3, 11))
    assert "fold 1 finished before; skipped" in capsys.readouterr().err
    with open(os.path.join(tmp_path, "logs", "main", "cross_validation.log")) as f:
        assert "fold 1 finished before; skipped" in f.read()  # in the log file too
    assert os.path.isfile(os.path.join(
        tmp_path, "results", "Transfer_Cnn6", "pretrain=False", "loss_type=clip_nll",
        "augmentation=none", "batch_size=4", "freeze_base=False", "cv_summary.csv"))


@pytest.mark.parametrize("flag", ["--learning_rate=nan", "--learning_rate=inf", "--seed=-1",
                                  "--threshold=1.5", "--batch_size=0", "--learning_rate=1e38"])
@pytest.mark.slow
def test_bad_numbers_are_one_line_errors(tmp_path, features, flag):
    result = run_script("pytorch/main.py", "train", f"--workspace={tmp_path}",
                        f"--features={features}", flag)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"error: {flag}")


@pytest.mark.slow
def test_an_extreme_clip_duration_is_one_line(tmp_path):
    folders = make_class_folders(str(tmp_path / "data"), clips_per_class=2)
    result = run_script("utils/features.py", "pack_audio_files_to_hdf5", f"--dataset_dir={folders}",
                        f"--workspace={tmp_path}", "--clip_duration=1e-9")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --clip_duration=1e-9: must be between 0.1 and 3600 (see --help)"


@pytest.mark.slow
def test_file_system_faults_are_one_line_errors(tmp_path, features):
    # An output folder that is a file: evaluation finds it when writing its reports.
    train(tmp_path, features)
    checkpoint = os.path.join(checkpoints_of(tmp_path), "2_iterations.pth")
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    result = run_script("pytorch/main.py", "evaluate", f"--checkpoint_path={checkpoint}",
                        f"--output_dir={not_a_folder}")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"error: {not_a_folder}: --output_dir is a file, not a folder; move it away"]
    # Inference checks its --output before decoding anything.
    folder = tmp_path / "predictions.csv"
    folder.mkdir()
    result = run_script("pytorch/main.py", "inference", f"--checkpoint_path={checkpoint}",
                        f"--audio_path={tmp_path}", f"--output={folder}")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"error: --output={folder}: is a folder; give a file name"]


@pytest.mark.slow
def test_packing_checks_its_output_first_and_a_failed_repack_keeps_the_old_report(tmp_path):
    data = make_class_folders(str(tmp_path / "data"), classes=("a", "b"), clips_per_class=2)
    os.makedirs(os.path.join(data, "empty"))  # a class folder without audio: warned about
    workspace = tmp_path / "ws"
    result = run_script("utils/features.py", "pack_audio_files_to_hdf5", f"--dataset_dir={data}",
                        f"--workspace={workspace}", "--clip_duration=1", "--num_workers=1")
    assert result.returncode == 0 and "has no audio files" in result.stderr
    report = workspace / "features" / "waveform_report.tsv"
    kept = report.read_text()

    broken = tmp_path / "broken"
    for label in ("a", "b"):
        os.makedirs(broken / label)
        (broken / label / "x.wav").write_bytes(b"RIFF....not audio")
    result = run_script("utils/features.py", "pack_audio_files_to_hdf5", f"--dataset_dir={broken}",
                        f"--workspace={workspace}", "--clip_duration=1", "--num_workers=1")
    assert result.returncode == 2 and "waveform_failed_report.tsv" in result.stderr
    assert report.read_text() == kept  # the report of the HDF5 still there is untouched

    folder = tmp_path / "out.h5"
    folder.mkdir()
    result = run_script("utils/features.py", "pack_audio_files_to_hdf5", f"--dataset_dir={data}",
                        f"--workspace={workspace}", f"--output={folder}", "--num_workers=1")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"error: --output={folder}: is a folder; give a file name"]


def test_a_single_class_dataset_is_refused_before_training(tmp_path):
    data = make_class_folders(str(tmp_path / "data"), classes=("only",), clips_per_class=10)
    labels, found = scan_class_folders(data)
    features = str(tmp_path / "one.h5")
    pack_to_hdf5([(name, path, one_hot(index, 1)) for name, path, index in found], labels,
                 "single_label", features, clip_duration=1.0)
    with pytest.raises(UsageError, match=r"hold 1 class\(es\) \(only\).*at least two"):
        train(tmp_path / "ws", features)


def test_silent_clips_are_reported_and_inference_follows_symlinked_folders(tmp_path):
    data = make_class_folders(str(tmp_path / "data"), classes=("a", "b"), clips_per_class=2)
    soundfile.write(os.path.join(data, "a", "silent.wav"), np.zeros(32000, np.float32), 32000)
    labels, found = scan_class_folders(data)
    output = str(tmp_path / "w.h5")
    pack_to_hdf5([(name, path, one_hot(index, 2)) for name, path, index in found], labels,
                 "single_label", output, clip_duration=1.0)
    report = open(str(tmp_path / "w_report.tsv")).read()
    assert "silent.wav\tpacked, but its clip is all silence" in report

    # A WAV cut short (its header promises more frames): packed, and reported.
    cut = os.path.join(data, "b", "cut.wav")
    soundfile.write(cut, np.full(32000, 0.25, np.float32), 32000, subtype="PCM_16")
    with open(cut, "r+b") as f:
        f.truncate(os.path.getsize(cut) - 20000)
    labels, found = scan_class_folders(data)
    pack_to_hdf5([(name, path, one_hot(index, 2)) for name, path, index in found], labels,
                 "single_label", output, clip_duration=1.0)
    report = open(str(tmp_path / "w_report.tsv")).read()
    assert "cut.wav\tpacked, but truncated: its header promises 32000 frames, the file holds 22000" in report

    os.makedirs(tmp_path / "query")
    os.symlink(os.path.join(data, "b"), tmp_path / "query" / "linked")
    assert [os.path.basename(path) for path in find_audio_files(str(tmp_path / "query"))] == [
        "b.00000.wav", "b.00001.wav", "cut.wav"]


def test_folder_walks_visit_each_file_once_and_say_what_they_cannot_read(tmp_path, capsys):
    data = make_class_folders(str(tmp_path / "data"), classes=("a", "b"), clips_per_class=3)
    os.symlink(data, os.path.join(data, "a", "loop"))  # a real link loop: data/a/loop -> data
    os.symlink(os.path.join(data, "b"), os.path.join(data, "b_again"))  # b listed twice
    found = find_audio_files(data)
    assert len(found) == 6 == len({os.path.realpath(path) for path in found})


@pytest.mark.slow
@pytest.mark.skipif(not nobody_can_run_the_project(),
                    reason="needs root, and a checkout and interpreter another user can read")
def test_an_unreadable_folder_is_reported_not_skipped_silently():
    """As an unprivileged user (root reads every folder): the walk says what it cannot read."""
    import shutil
    import tempfile
    shared = tempfile.mkdtemp(prefix="walk_test.")
    try:
        data = make_class_folders(os.path.join(shared, "data"), classes=("a", "b"),
                                  clips_per_class=2)
        for root, dirs, files in os.walk(shared):
            for name in dirs + files:
                os.chmod(os.path.join(root, name), 0o777)
        os.chmod(shared, 0o777)
        os.chmod(os.path.join(data, "b"), 0)
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
             "import sys; from pytorch.inference import find_audio_files; "
             "print(len(find_audio_files(sys.argv[1])))", data],
            capture_output=True, text=True, cwd=REPO_DIR)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip() == "2"
        assert f"warning: {data}/b: cannot be read (Permission denied)" in result.stderr
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_packing_onto_a_full_disk_is_refused_before_decoding(tmp_path, monkeypatch):
    data = make_class_folders(str(tmp_path / "data"), classes=("a", "b"), clips_per_class=2)
    labels, found = scan_class_folders(data)
    monkeypatch.setattr("utils.utilities.shutil.disk_usage", lambda path: DiskUsage(10**9, 10**9, 1000))
    with pytest.raises(UsageError, match="MiB free, but about .* MiB needed for the HDF5"):
        pack_to_hdf5([(name, path, one_hot(index, 2)) for name, path, index in found], labels,
                     "single_label", str(tmp_path / "w.h5"), clip_duration=1.0)
    assert os.listdir(tmp_path) == ["data"]  # no HDF5, no temporary, no report


@pytest.mark.slow
def test_data_is_identified_by_its_content_not_its_path(tmp_path):
    """A file repacked at the same path with other folds is other data (resume and evaluate
    refuse it); the same data copied to another path is the same run."""
    import shutil
    folders = make_class_folders(str(tmp_path / "data"), classes=("high", "low", "mid"),
                                 clips_per_class=10)
    labels, found = scan_class_folders(folders)
    items = [(clip, path, one_hot(index, 3)) for clip, path, index in found]
    workspace = tmp_path / "ws"
    packed = str(workspace / "features" / "waveform.h5")
    pack_to_hdf5(items, labels, "single_label", packed, clip_duration=1.0, seed=1234)
    train(workspace, packed)

    moved = tmp_path / "moved"  # a workspace copied to another machine
    shutil.copytree(workspace, moved)
    train(moved, str(moved / "features" / "waveform.h5"), "--resume_iteration=2",
          "--stop_iteration=4")
    assert visible_files(checkpoints_of(moved)) == ["2_iterations.pth", "4_iterations.pth"]

    pack_to_hdf5(items, labels, "single_label", packed, clip_duration=1.0, seed=99)
    with pytest.raises(UsageError, match=r"other settings \(the packed data"):
        train(workspace, packed, "--resume_iteration=2", "--stop_iteration=4")
    result = run_script("pytorch/main.py", "evaluate", "--checkpoint_path=" + os.path.join(
        checkpoints_of(workspace), "2_iterations.pth"))
    assert result.returncode == 2 and "(the file was repacked)" in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]


@pytest.mark.slow
@pytest.mark.skipif(not nobody_can_run_the_project(),
                    reason="needs root, and a checkout and interpreter another user can read")
def test_a_user_who_does_not_own_the_install(tmp_path):
    """As an unprivileged user (setpriv): librosa's numba cache goes to the user's own folder,
    and a file the user may not read is reported as such, not as undecodable."""
    import shutil
    import tempfile
    import torch
    from pytorch.models import Cnn6
    shared = tempfile.mkdtemp(prefix="shared_install_test.")
    try:
        os.chmod(shared, 0o777)
        folders = make_class_folders(os.path.join(shared, "data"), clips_per_class=3)
        locked = os.path.join(folders, "high", "high.00001.wav")
        os.chmod(locked, 0)
        torch.save({"model": Cnn6(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64,
                                  fmin=50, fmax=14000).state_dict()},
                   os.path.join(shared, "Cnn6_mAP=0.343.pth"))
        for root, dirs, files in os.walk(shared):
            for name in dirs + [f for f in files if os.path.join(root, f) != locked]:
                os.chmod(os.path.join(root, name), 0o777)
        environment = {key: value for key, value in os.environ.items()
                       if key != "NUMBA_CACHE_DIR"}
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                     sys.executable]
        packed = subprocess.run(as_nobody + [
            "utils/features.py", "pack_audio_files_to_hdf5", f"--dataset_dir={folders}",
            # no worker pool: this sandbox's interpreter lies under /root, which its re-spawned
            # helper processes cannot reach as another user
            f"--workspace={shared}/ws", "--clip_duration=1", "--num_workers=0"],
            capture_output=True, text=True,
            cwd=REPO_DIR, env=environment)
        assert packed.returncode == 0, packed.stderr[-2000:]
        with open(os.path.join(shared, "ws", "features", "waveform_report.tsv")) as f:
            report = f.read()
        assert "high.00001.wav" in report and "permission denied" in report
        tagged = subprocess.run(as_nobody + [
            "pytorch/main.py", "inference", f"--checkpoint_path={shared}/Cnn6_mAP=0.343.pth",
            f"--audio_path={folders}/low/low.00000.wav", "--num_workers=0"], capture_output=True,
            text=True,
            cwd=REPO_DIR, env=environment)
        assert tagged.returncode == 0 and "cannot cache" not in tagged.stderr, tagged.stderr[-2000:]
    finally:
        shutil.rmtree(shared, ignore_errors=True)


@pytest.mark.slow
def test_resume_with_a_damaged_statistics_pickle_is_one_line(tmp_path, features):
    train(tmp_path, features)
    with open(os.path.join(statistics_of(tmp_path), "statistics.pickle"), "r+b") as f:
        f.truncate(10)  # cut short, as a killed copy leaves it
    with pytest.raises(UsageError, match=r"statistics.pickle: cannot read statistics pickle"):
        train(tmp_path, features, "--resume_iteration=2", "--stop_iteration=4")
