"""Messages that say what happened (issue 31): a window too large for memory refused before any
audio is read, a FIFO named as such, the API's missing file named, hidden files said, shards of
the same data not called other data, a bad flag through iab.sh refused before packing."""
import logging
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

from helpers import REPO_DIR, SR, pack_csv, run_script, save_checkpoint
from utils.utilities import UsageError


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("messages") / "model.pth")
    save_checkpoint(path, ["a", "b"], "single_label",
                    np.random.default_rng(0).uniform(-0.5, 0.5, (2, SR)).astype(np.float32))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("command, flag", [("inference", "--timeline"), ("embed", None)])
def test_a_window_too_large_for_memory_is_refused_before_reading(checkpoint, tmp_path, command,
                                                                 flag):
    soundfile.write(tmp_path / "a.wav", np.zeros(SR, np.float32), SR)
    output = tmp_path / ("t.csv" if command == "inference" else "e.npy")
    started = time.time()
    result = run_script("pytorch/main.py", command, *([flag] if flag else []),
                        f"--checkpoint_path={checkpoint}", f"--audio_path={tmp_path / 'a.wav'}",
                        f"--output={output}", "--window=100000")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert re.match(r"error: --window=100000: a batch of \d+ window\(s\) of 100000 s needs about "
                    r"[\d.]+ GiB", last), last
    assert "more than half the memory available" in last and not output.exists()
    assert time.time() - started < 60


def test_a_fifo_is_named_as_a_fifo(tmp_path):
    fifo = tmp_path / "model.pth"
    os.mkfifo(fifo)
    result = run_script("pytorch/main.py", "evaluate", f"--checkpoint_path={fifo}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: --checkpoint_path={fifo}: is a named pipe (FIFO), not a regular file; save the "
        "data to a file first")


def test_the_api_names_the_missing_file(checkpoint, tmp_path):
    from pytorch.classifier import Classifier
    with pytest.raises(UsageError, match=f"audio={tmp_path / 'gone.wav'}: file not found"):
        Classifier.from_checkpoint(checkpoint).predict(str(tmp_path / "gone.wav"))


def test_hidden_audio_files_are_said_to_be_skipped(checkpoint, tmp_path, caplog):
    from pytorch.inference import find_audio_files
    soundfile.write(tmp_path / "a.wav", np.zeros(SR, np.float32), SR)
    soundfile.write(tmp_path / ".hidden.wav", np.zeros(SR, np.float32), SR)
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    with caplog.at_level(logging.WARNING):
        assert find_audio_files(str(tmp_path)) == [str(tmp_path / "a.wav")]
    assert [record.getMessage() for record in caplog.records] == [
        f"skipped {tmp_path / '.hidden.wav'}: a hidden file (its name starts with '.'); rename it "
        "to include it"]


@pytest.mark.slow
def test_the_same_clips_packed_as_shards_are_the_same_data(labelled, tmp_path, caplog):  # noqa: F811
    """Evaluating on shards of the data a model was trained on: no 'the data differs' warning
    (the digest follows the clips' order; the clips, folds and targets are the same)."""
    from pytorch.evaluate import check_compatible
    from utils.config import AudioConfig, RunConfig
    from utils.data_generator import read_hdf5_info
    pack_csv(labelled, tmp_path / "one")
    for index in (1, 2):
        pack_csv(labelled, tmp_path / "two", f"--shard={index}/2")
    one = str(tmp_path / "one" / "features" / "waveform.h5")
    shards = str(tmp_path / "two" / "features" / "waveform_shards")
    trained_on, info = read_hdf5_info(one), read_hdf5_info(shards)
    assert trained_on["digest"] != info["digest"]  # another order
    run = RunConfig(model_type="Transfer_Cnn6", task=info["task"], labels=list(info["labels"]),
                    audio=AudioConfig(clip_samples=info["clip_samples"]), features=one,
                    holdout_fold=1, loss_type="clip_bce", data_digest=trained_on["digest"])
    with caplog.at_level(logging.WARNING):
        check_compatible(run, info, shards, "folds")
    assert not caplog.records
    os.remove(one)  # the training data gone: nothing to compare with, so the warning stays
    with caplog.at_level(logging.WARNING):
        check_compatible(run, info, shards, "folds")
    assert "differ from the data the checkpoint was trained on" in caplog.records[-1].getMessage()


@pytest.mark.slow
def test_a_bad_training_flag_through_iab_sh_is_refused_before_packing(tmp_path):
    environment = dict(os.environ, PYTHON=sys.executable)
    result = subprocess.run(["bash", "scripts/iab.sh", f"AUDIO_DIR={tmp_path / 'audio'}",
                             f"WORKSPACE={tmp_path / 'ws'}", f"SEGMENTS_CSV={tmp_path / 's.csv'}",
                             "--learning_rate=fast"], cwd=REPO_DIR, env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "--learning_rate" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "ws").exists()  # nothing packed, no zero-shot run


def test_a_replaced_resume_checkpoint_does_not_suggest_trust_checkpoint(tmp_path, features):
    import datetime
    import torch
    from helpers import run_dir
    from helpers import train
    train(tmp_path, features, "--stop_iteration=2", "--eval_every=2", "--save_every=2")
    path = os.path.join(run_dir(tmp_path, "checkpoints"), "2_iterations.pth")
    torch.save({"model": {}, "written": datetime.datetime(2026, 1, 1)}, path)
    with pytest.raises(UsageError) as refused:
        train(tmp_path, features, "--stop_iteration=4", "--eval_every=2", "--save_every=2",
              "--resume_iteration=2", "--trust_checkpoint")
    message = str(refused.value)
    assert "this project's checkpoints never hold" in message and "was replaced or altered" in message
    assert "add --trust_checkpoint" not in message


def test_progress_bars_write_a_few_lines_into_a_redirected_log():
    """A batch job's log gets progress every REDIRECTED_PROGRESS_SECONDS, not once per step."""
    script = ("import time\nfrom utils.utilities import progress\n"
              "for _ in progress(range(300), desc='steps'):\n    time.sleep(0.005)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_DIR, capture_output=True,
                            text=True, check=True)
    updates = [line for line in re.split(r"[\r\n]", result.stderr) if "steps" in line]
    assert 1 <= len(updates) <= 3 and "300/300" in updates[-1]
