"""Training under torchrun: two gloo processes on the CPU against one process on the same data.

Under torchrun every rank draws the same global batch (same sampler seed) and trains on its
contiguous half; DDP averages the two halves' gradients, which is the gradient of the whole
batch's mean loss. Mixup weights are drawn for the whole global batch on every rank and then
sliced, so they too are those of one process. Two things still differ by design, and the
exact comparison switches them off:

* BatchNorm in train mode normalises with the statistics of the batch it sees, i.e. each rank's
  half. --freeze_base keeps the base in eval mode (running statistics, no dropout) and trains
  only the new head, so every clip's forward pass is independent of its batch-mates.
* SpecAugment draws its random stripes per rank (from a per-rank seed), not per global batch,
  so it is off (--no_spec_augment).

With those, one process and two processes must record the same per-iteration losses and end with
the same trained weights, with and without mixup, up to float rounding (the CPU kernels'
summation order differs with the batch size and the thread count).

The resume test runs the full model instead (BatchNorm in train mode, dropout, SpecAugment):
a 2-process run resumed from its own checkpoint must replay the uninterrupted 2-process run,
which needs each rank's own random states back.
"""
import os
import re
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from pytorch import main as main_script
from pytorch.checkpoints import load_checkpoint_file
from helpers import REPO_DIR, load_statistics, run_dir, visible_files
from pytorch.pytorch_utils import Mixup
from pytorch.distributed import rank_mixup_lambda

MAIN = os.path.join(REPO_DIR, "pytorch", "main.py")
COMMON = ["--model_type=Transfer_Cnn6", "--batch_size=4", "--learning_rate=1e-3",
          "--stop_iteration=4", "--eval_every=2", "--save_every=2"]
EXACT = ["--freeze_base", "--no_spec_augment"]


def train_one_process(workspace, features, *extra):
    main_script.main(["train", f"--workspace={workspace}", f"--features={features}",
                      "--num_workers=0", *COMMON, *extra])


def train_two_processes(workspace, features, *extra, nodes=1):
    """pytorch/main.py under torchrun, 2 CPU processes (gloo): on one node (--standalone picks
    a free port), or as two "nodes" of one process each, two torchrun launchers meeting at a
    c10d rendezvous as separate machines do (README: several machines)."""
    train = [MAIN, "train", f"--workspace={workspace}", f"--features={features}", *COMMON, *extra]
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    if nodes == 1:
        result = subprocess.run(torchrun + ["--standalone", "--nproc_per_node=2"] + train,
                                capture_output=True, text=True, cwd=REPO_DIR, timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
        return result
    port = free_port()
    launchers = [subprocess.Popen(torchrun + [
        "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d",
        f"--rdzv_endpoint=127.0.0.1:{port}", f"--rdzv_id=test{port}"] + train,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_DIR)
        for _ in range(2)]
    outputs = [launcher.communicate(timeout=300) for launcher in launchers]
    for launcher, (stdout, stderr) in zip(launchers, outputs):
        assert launcher.returncode == 0, stdout[-2000:] + stderr[-4000:]
    return outputs


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def final_weights(workspace, iteration=4, **run):
    path = os.path.join(run_dir(workspace, "checkpoints", **run), f"{iteration}_iterations.pth")
    return load_checkpoint_file(path)["model"]


def train_losses(statistics):
    return [entry["iteration"] for entry in statistics["train"]], \
        [entry["loss"] for entry in statistics["train"]]


def test_rank_shares_of_mixup_weights_are_the_global_draw():
    single = Mixup(seed=7).get_lambda(8)
    mixups = [Mixup(seed=7), Mixup(seed=7)]  # one per rank, seeded alike
    shares = [rank_mixup_lambda(mixup, 4, rank, 2).numpy() for rank, mixup in enumerate(mixups)]
    np.testing.assert_array_equal(np.concatenate(shares), single)


@pytest.mark.slow
@pytest.mark.parametrize("augmentation, streamed, nodes", [("mixup", False, 1),
                                                           ("none", True, 1), ("mixup", True, 2)])
def test_two_processes_match_one(tmp_path, features, augmentation, streamed, nodes):
    """Same losses and trained head; rank 0 alone wrote statistics, checkpoints and the log,
    whether the two processes share one node or are two nodes meeting at a rendezvous.

    The streamed runs read the 2-process run's clips through DataLoader workers
    (--in_memory=no) while the single process gathers them from memory: same data either way.
    """
    run = dict(augmentation=augmentation, freeze_base=True)
    train_one_process(tmp_path / "one", features, *EXACT, f"--augmentation={augmentation}")
    streaming = ["--in_memory=no", "--num_workers=1"] if streamed else ["--num_workers=0"]
    train_two_processes(tmp_path / "two", features, *EXACT, f"--augmentation={augmentation}",
                        *streaming, nodes=nodes)

    one, two = (load_statistics(tmp_path / name, **run) for name in ("one", "two"))
    assert two["meta"]["world_size"] == 2 and one["meta"]["world_size"] == 1
    one_iterations, one_losses = train_losses(one)
    two_iterations, two_losses = train_losses(two)
    assert two_iterations == one_iterations == [1, 2, 3, 4]
    assert len(set(np.round(one_losses, 4))) > 1  # the head is learning: losses move
    np.testing.assert_allclose(two_losses, one_losses, rtol=1e-4)
    assert [e["iteration"] for e in two["validate"]] == [0, 2, 4]
    np.testing.assert_allclose([e["loss"] for e in two["validate"]],
                               [e["loss"] for e in one["validate"]], rtol=1e-4)

    weights_one, weights_two = final_weights(tmp_path / "one", **run), final_weights(tmp_path / "two", **run)
    start = final_weights(tmp_path / "one", iteration=2, **run)
    assert not torch.equal(start["fc_transfer.weight"], weights_one["fc_transfer.weight"])
    for key in ("fc_transfer.weight", "fc_transfer.bias"):
        torch.testing.assert_close(weights_two[key], weights_one[key], rtol=1e-4, atol=1e-6)

    # Only rank 0 writes: one statistics pickle and one timestamped backup, the two checkpoints,
    # and a log in which every line of the run appears once.
    assert sorted(visible_files(run_dir(tmp_path / "two", "checkpoints", **run))) == \
        ["2_iterations.pth", "4_iterations.pth"]
    statistics_files = sorted(visible_files(run_dir(tmp_path / "two", "statistics", **run)))
    assert len(statistics_files) == 5 and statistics_files[0].startswith("events.out.tfevents")
    assert statistics_files[1:4] == ["metrics.csv", "run.json", "statistics.pickle"]
    assert statistics_files[4].startswith("statistics_2")
    assert os.listdir(run_dir(tmp_path / "two", "logs", **run)) == ["train.log"]
    with open(os.path.join(run_dir(tmp_path / "two", "logs", **run), "train.log")) as f:
        log = f.read()
    assert log.count("run: ") == 1 and log.count("saved ") == 2
    assert "2 process(es)" in log
    # every rank's host memory, gathered to rank 0's log: real, positive figures
    memory = re.search(r"host memory per rank.*: rank 0 RSS (\d+) PSS (\d+) anon \d+ file \d+; "
                       r"rank 1 RSS (\d+) PSS (\d+)", log)
    assert memory and all(int(value) > 50 for value in memory.groups()), log[-2000:]


@pytest.mark.slow
def test_two_node_resume_replays_the_uninterrupted_run(tmp_path, features):
    """Full training (BatchNorm in train mode, dropout, SpecAugment, mixup) on 2 nodes:
    resuming from the 2-node checkpoint at iteration 2 replays iterations 3 and 4 exactly."""
    train_two_processes(tmp_path / "straight", features, "--augmentation=mixup", nodes=2)
    # A fresh workspace holding only the checkpoint the 2-process run saved at iteration 2.
    resumed_checkpoints = run_dir(tmp_path / "resumed", "checkpoints")
    os.makedirs(resumed_checkpoints)
    shutil.copy(os.path.join(run_dir(tmp_path / "straight", "checkpoints"), "2_iterations.pth"),
                resumed_checkpoints)
    train_two_processes(tmp_path / "resumed", features, "--augmentation=mixup",
                        "--resume_iteration=2", nodes=2)

    straight, resumed = (load_statistics(tmp_path / name) for name in ("straight", "resumed"))
    iterations, losses = train_losses(resumed)
    assert iterations == [3, 4]
    np.testing.assert_allclose(losses, train_losses(straight)[1][2:], rtol=1e-5)
    assert [e["iteration"] for e in resumed["validate"]] == [4]
    weights_straight, weights_resumed = (final_weights(tmp_path / name)
                                         for name in ("straight", "resumed"))
    start = final_weights(tmp_path / "straight", iteration=2)
    assert not torch.equal(start["base.conv_block1.conv1.weight"],
                           weights_straight["base.conv_block1.conv1.weight"])  # the base trains
    for key in weights_straight:
        torch.testing.assert_close(weights_resumed[key], weights_straight[key], rtol=1e-5,
                                   atol=1e-6, msg=key)
    checkpoint = load_checkpoint_file(os.path.join(resumed_checkpoints, "4_iterations.pth"))
    assert len(checkpoint["rank_rng"]) == 2  # each rank's random states


@pytest.mark.slow
def test_sync_batchnorm_on_cpus_is_a_usage_error(tmp_path, features):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", MAIN, "train", f"--workspace={tmp_path}",
               f"--features={features}", *COMMON, "--sync_batchnorm"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_DIR, timeout=300)
    assert result.returncode != 0  # torchrun then reports the failed workers in its own words
    assert "error: --sync_batchnorm needs CUDA GPUs" in result.stderr
    assert not os.path.exists(os.path.join(tmp_path, "checkpoints"))


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_two_gpus_match_one_gpu(tmp_path, features):
    """NCCL on two GPUs against one GPU (looser: cuDNN picks kernels per batch size)."""
    run = dict(augmentation="mixup", freeze_base=True)
    train_one_process(tmp_path / "one", features, *EXACT, "--cuda")
    train_two_processes(tmp_path / "two", features, *EXACT, "--cuda", "--num_workers=0")
    one, two = (load_statistics(tmp_path / name, **run) for name in ("one", "two"))
    np.testing.assert_allclose(train_losses(two)[1], train_losses(one)[1], rtol=1e-3)
