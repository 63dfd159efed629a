"""Packing in shards and reading several files as one dataset: the shards of a list hold its
one-file pack's clips, folds and targets; a killed pack continues where it stopped; shards that
disagree are refused naming the shard; training over shards resumes exactly."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch

from helpers import REPO_DIR, pack_csv, run_script, write_tone
from pytorch import main as main_script
from pytorch.checkpoints import load_checkpoint_file
from utils.data_generator import WaveformDataset, read_hdf5_info
from utils.features import one_hot, pack_to_hdf5
from utils.utilities import UsageError


def clips_of(features):
    """{name: (fold, target, waveform bytes)} of a packed file or of its shards."""
    dataset = WaveformDataset(features, in_memory=False, as_int16=True)
    return {name: (int(fold), tuple(dataset.targets[index]), dataset[index]["waveform"].tobytes())
            for index, (name, fold) in enumerate(zip(dataset.audio_names, dataset.info["folds"]))}


@pytest.mark.slow
def test_four_shards_hold_the_one_file_packs_clips_folds_and_targets(labelled, tmp_path):
    pack_csv(labelled, tmp_path / "one", "--max_clips_per_label=25")
    for index in range(1, 5):
        pack_csv(labelled, tmp_path / "four", f"--shard={index}/4", "--max_clips_per_label=25")
    one = clips_of(str(tmp_path / "one" / "features" / "waveform.h5"))
    folder = tmp_path / "four" / "features" / "waveform_shards"
    shards = sorted(glob.glob(str(folder / "*.h5")))
    assert [os.path.basename(path) for path in shards] == [
        f"waveform-0000{index}-of-00004.h5" for index in range(1, 5)]
    assert clips_of(str(folder)) == one  # the folder, read as one dataset
    assert clips_of(shards) == one       # the files, listed
    assert clips_of(str(folder / "waveform-*-of-00004.h5")) == one  # a glob
    sizes = [read_hdf5_info(path)["waveform_shape"][0] for path in shards]
    assert sum(sizes) == len(one) and min(sizes) > 0
    reports = [open(path).read() for path in glob.glob(str(folder / "*_report.tsv"))]
    assert sum("broken.wav" in report for report in reports) == 1  # in its own shard's report

    summary = run_script("utils/features.py", "shard_summary", f"--shards={folder}")
    assert summary.returncode == 0, summary.stderr
    assert f"4 of 4 shards packed: {len(one)} clips" in summary.stdout
    written = json.loads((folder / "summary.json").read_text())
    assert written["complete"] and [row["clips"] for row in written["shards"]] == sizes

    os.remove(shards[2])
    summary = run_script("utils/features.py", "shard_summary", f"--shards={folder}")
    assert "3/4  missing" in summary.stdout and "not complete" in summary.stdout


def test_shards_that_disagree_are_refused_naming_the_shard(tmp_path):
    paths = [write_tone(str(tmp_path / "audio" / f"{index}.wav"), 300.0 + 50 * index, 0.5)
             for index in range(6)]
    items = [(os.path.basename(path), path, one_hot(index % 2, 2))
             for index, path in enumerate(paths)]
    pack_to_hdf5(items[:3], ["a", "b"], "single_label", str(tmp_path / "x" / "1.h5"),
                 clip_duration=0.5)
    pack_to_hdf5(items[3:], ["a", "b"], "single_label", str(tmp_path / "x" / "2.h5"),
                 sample_rate=16000, clip_duration=0.5)
    with pytest.raises(UsageError, match=r"--features=.*x/2.h5: its sample rate \(16000\) "
                                         r"differs from .*x/1.h5's \(32000\)"):
        read_hdf5_info(str(tmp_path / "x"))
    pack_to_hdf5(items[2:], ["a", "b"], "single_label", str(tmp_path / "y" / "2.h5"),
                 clip_duration=0.5)
    os.replace(tmp_path / "x" / "1.h5", tmp_path / "y" / "1.h5")
    with pytest.raises(UsageError, match=r"together: clip names repeat \(2.wav\)"):
        read_hdf5_info([str(tmp_path / "y" / "1.h5"), str(tmp_path / "y" / "2.h5")])
    with pytest.raises(UsageError, match=r"--features=.*nowhere/\*.h5: no file matches"):
        read_hdf5_info(str(tmp_path / "nowhere" / "*.h5"))


@pytest.mark.slow
def test_a_killed_pack_continues_where_it_stopped(labelled, tmp_path):
    """A packer of 300 clips is killed (SIGKILL) as soon as its log holds a checkpoint (every
    64 clips), mid-pack. The rerun decodes only what the log does not hold, and the file
    equals an uninterrupted pack's."""
    import shutil
    source = labelled.parent
    rows = []
    for copy in range(3):  # 300 clips: well over a second of packing after the first checkpoint
        shutil.copytree(source / "audio", tmp_path / "data" / f"audio{copy}")
        rows += [f"audio{copy}/clip{clip:03d}.wav,{('low', 'high')[clip % 2]}"
                 for clip in range(100)]
    csv = tmp_path / "data" / "labels.csv"
    csv.write_text("\n".join(rows) + "\n")
    workspace = tmp_path / "ws"
    packer = subprocess.Popen(
        [sys.executable, os.path.join(REPO_DIR, "utils", "features.py"), "pack_csv_to_hdf5",
         f"--csv={csv}", f"--workspace={workspace}", "--clip_duration=0.5", "--num_workers=0",
         "--keep_unlabelled", "--shard=1/1"],
        cwd=REPO_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = workspace / "features" / "waveform_shards"
    log = folder / ".waveform-00001-of-00001.h5.progress"
    deadline = time.time() + 120
    while time.time() < deadline and packer.poll() is None and \
            (not log.exists() or len(log.read_text().splitlines()) < 65):
        time.sleep(0.001)
    packer.send_signal(signal.SIGKILL)
    assert packer.wait(timeout=60) == -signal.SIGKILL  # killed mid-pack, not finished
    logged = len(log.read_text().splitlines()) - 1  # the job line, then one line per clip
    assert logged in (64, 128, 192, 256), logged
    summary = run_script("utils/features.py", "shard_summary", f"--shards={folder}")
    assert f"1/1  packing    {logged} clips done" in summary.stdout, summary.stdout
    assert "0 of 1 shards packed: 0 clips, 0.00 GB; not complete" in summary.stdout

    rerun = pack_csv(csv, workspace, "--shard=1/1")
    assert f"{logged} of 300 clips done before" in rerun.stderr
    assert f"{logged}/300" in rerun.stderr and " 0/300" not in rerun.stderr  # the bar's start
    assert sorted(os.listdir(folder)) == ["summary.json", "waveform-00001-of-00001.h5",
                                          "waveform-00001-of-00001_report.tsv"]
    pack_csv(csv, tmp_path / "whole")
    assert clips_of(str(folder)) == clips_of(str(tmp_path / "whole" / "features" / "waveform.h5"))


@pytest.mark.slow
def test_training_over_shards_resumes_exactly(labelled, tmp_path):
    """Folds, the balanced sampler and --resume_iteration over a folder of shards: a run
    stopped at 2 and resumed to 4 ends with the weights of one that ran to 4."""
    shards = tmp_path / "data"
    for index in (1, 2, 3):
        pack_csv(labelled, shards, f"--shard={index}/3")
    folder = str(shards / "features" / "waveform_shards")

    def train(workspace, *extra):
        main_script.main(["train", f"--workspace={workspace}", f"--features={folder}",
                          "--model_type=Transfer_Cnn6", "--batch_size=4", "--num_workers=0",
                          "--in_memory=no", "--learning_rate=1e-3", "--holdout_fold=2",
                          "--sampler=balanced", "--eval_every=2", "--save_every=2",
                          "--no_spec_augment", *extra])

    train(tmp_path / "straight", "--stop_iteration=4")
    train(tmp_path / "resumed", "--stop_iteration=2")
    train(tmp_path / "resumed", "--stop_iteration=4", "--resume_iteration=2")
    weights = []
    for workspace in ("straight", "resumed"):
        path, = glob.glob(str(tmp_path / workspace / "checkpoints" / "**" / "4_iterations.pth"),
                          recursive=True)
        checkpoint = load_checkpoint_file(path)
        assert checkpoint["config"]["features"] == sorted(glob.glob(folder + "/*.h5"))
        weights.append(checkpoint["model"])
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


def test_clips_read_alike_mapped_streamed_and_through_hdf5(tmp_path):
    """The three readers of utils/clip_store.py give the same int16, also for a file a user
    wrote compressed (read through h5py), and the loader's read-ahead changes no batch."""
    from utils.data_generator import EvaluateSampler, ReadAhead
    paths = [write_tone(str(tmp_path / "audio" / f"{index}.wav"), 200.0 + 90 * index, 0.3)
             for index in range(9)]
    items = [(os.path.basename(path), path, one_hot(index % 3, 3))
             for index, path in enumerate(paths)]
    packed = str(tmp_path / "plain.h5")
    pack_to_hdf5(items, ["a", "b", "c"], "single_label", packed, clip_duration=0.3)
    compressed = str(tmp_path / "compressed.h5")
    with h5py.File(packed, "r") as source, h5py.File(compressed, "w") as target:
        for name in ("audio_name", "target", "fold"):
            source.copy(name, target)
        target.attrs.update(source.attrs)
        target.create_dataset("waveform", data=source["waveform"][:], chunks=(3, 9600),
                              compression="gzip")
    mapped = WaveformDataset(packed, in_memory=True, as_int16=True)
    streamed = WaveformDataset(packed, in_memory=False, as_int16=True)
    through_hdf5 = WaveformDataset(compressed, in_memory=False, as_int16=True)
    assert mapped.clips.offsets[0] is not None and through_hdf5.clips.offsets[0] is None
    for index in range(9):
        expected = mapped[index]["waveform"]
        assert np.abs(expected).max() > 1000
        assert np.array_equal(streamed[index]["waveform"], expected)
        assert np.array_equal(through_hdf5[index]["waveform"], expected)
    sampler = EvaluateSampler(np.arange(9), 2)
    assert list(ReadAhead(sampler, streamed.clips, depth=3)) == list(sampler)


MEMORY_PROBE = """
import sys
import h5py, numpy as np
from utils.data_generator import WaveformDataset
from utils.utilities import host_memory_mb

def anonymous_mb():
    return host_memory_mb()["anon"]

dataset = WaveformDataset(sys.argv[1], in_memory=True, as_int16=True)
dataset.clips.read(0)  # the files opened and mapped
before = anonymous_mb()
total = sum(int(dataset.clips.read(index).sum(dtype=np.int64)) for index in range(len(dataset)))
mapped = anonymous_mb() - before
copy = np.concatenate([h5py.File(path, "r")["waveform"][:] for path in dataset.clips.paths])
print(total == int(copy.sum(dtype=np.int64)), mapped, anonymous_mb() - before)
"""


def test_data_held_in_memory_is_mapped_not_copied(tmp_path):
    """--in_memory=yes holds the clips as the files' pages (shared by every process of the
    node), not as memory of each process: reading every clip adds next to nothing to the
    process's own (anonymous) memory, where a copy adds the data's size. Measured in a fresh
    process, whose allocator holds no freed memory to reuse."""
    from scripts.benchmark_reading import write_shards
    folder = write_shards(str(tmp_path), clips=64, seconds=10.0, shards=2)  # 41 MB
    result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, folder], cwd=REPO_DIR,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    same, mapped, copied = result.stdout.split()
    assert same == "True"  # the mapped reads gave the file's clips
    assert float(mapped) < 4 and float(copied) > 35, result.stdout


def test_a_shard_another_process_is_packing_is_refused(tmp_path):
    """Two machines given the same --shard would write one partial file: the second is
    refused in one line while the first holds the pack's lock; afterwards the lock is gone."""
    import fcntl
    path = write_tone(str(tmp_path / "audio" / "a.wav"), 440.0, 0.3)
    items = [("a.wav", path, one_hot(0, 2)), ("b.wav", path, one_hot(1, 2))]
    output = str(tmp_path / "ws" / "w.h5")
    os.makedirs(tmp_path / "ws")
    with open(tmp_path / "ws" / ".w.h5.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UsageError, match=r"another process is packing .*w.h5 now"):
            pack_to_hdf5(items, ["a", "b"], "single_label", output, clip_duration=0.3)
    pack_to_hdf5(items, ["a", "b"], "single_label", output, clip_duration=0.3)
    assert sorted(os.listdir(tmp_path / "ws")) == ["w.h5", "w_report.tsv"]


def test_subsets_and_splits_read_alike_from_shards_and_one_file(tmp_path):
    """A pack with its own train/valid/test subsets (the seed CSVs' kind), in 3 shards and in
    one file: every split names the same clips (multi-label folds dealt over the whole list)."""
    from utils.splits import split_train_eval_indices
    paths = [write_tone(str(tmp_path / "audio" / f"{index}.wav"), 200.0 + 37 * index, 0.2)
             for index in range(40)]
    items = [(f"{index}.wav", path, np.array([index % 2, index % 3 == 0], dtype=np.float32))
             for index, path in enumerate(paths)]
    subset_of = {path: ("train", "train", "valid", "test")[index % 4]
                 for index, path in enumerate(paths)}
    one = str(tmp_path / "one.h5")
    pack_to_hdf5(items, ["odd", "third"], "multi_label", one, clip_duration=0.2,
                 subset_of=subset_of)
    for index in (1, 2, 3):
        pack_to_hdf5(items, ["odd", "third"], "multi_label", str(tmp_path / "many.h5"),
                     clip_duration=0.2, subset_of=subset_of, shard=(index, 3))
    infos = [read_hdf5_info(one), read_hdf5_info(str(tmp_path / "many_shards"))]
    assert len(infos[1]["files"]) == 3
    for split, holdout, test_fold in (("subsets", "subsets", None), ("folds", 3, None),
                                      ("folds", 2, 5)):
        named = [[sorted(info["audio_names"][i] for i in indices)
                  for indices in split_train_eval_indices(info, holdout, split, test_fold)
                  if indices is not None] for info in infos]
        assert named[0] == named[1] and all(named[0]), (split, holdout)
