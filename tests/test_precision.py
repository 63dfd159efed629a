"""Speed options of training: --precision, --channels_last and --compile.

On the CPU: bf16 autocast trains with the log-mel front end kept in fp32 and the convolutions in
bf16; fp16 is refused with a one-line error (the CPU has no fast fp16 arithmetic); channels-last
and compiled training give the losses of the plain run. GPU paths run where CUDA is available.
torch.compile's inductor backend takes about a minute to build these kernels on a small CPU, so
the default run compiles with the aot_eager backend (the same graph capture, eager kernels) and
RUN_SLOW=1 adds the inductor run.
"""
import functools
import json
import os

import numpy as np
import pytest
import torch

from pytorch import main as main_script
from pytorch import models
from pytorch.checkpoints import load_checkpoint_file
from helpers import load_statistics, run_dir, run_script

RUN_SLOW = os.environ.get("RUN_SLOW") == "1"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def train(workspace, features, *extra):
    main_script.main(["train", f"--workspace={workspace}", f"--features={features}",
                      "--model_type=Transfer_Cnn6", "--batch_size=4", "--num_workers=0",
                      "--learning_rate=1e-3", "--stop_iteration=3", "--eval_every=3",
                      "--save_every=3", *extra])
    statistics = load_statistics(workspace, freeze_base="--freeze_base" in extra)
    return [entry["loss"] for entry in statistics["train"]]


@pytest.fixture(scope="module")
def fp32_losses(tmp_path_factory, features):
    return train(tmp_path_factory.mktemp("fp32"), features)


class OutputDtypes:
    """Records the output dtypes of the front end, a convolution and the head while training."""

    def __init__(self, monkeypatch):
        self.seen = {"logmel": set(), "conv": set(), "head": set()}
        create_model = models.create_model

        def create_and_watch(*args, **kwargs):
            model = create_model(*args, **kwargs)
            for name, module in (("conv", model.base.conv_block1.conv1),
                                 ("head", model.fc_transfer)):
                module.register_forward_hook(functools.partial(self.record, name))
            model.base.bn0.register_forward_hook(  # bn0 reads the log-mel
                lambda module, inputs, output: self.seen["logmel"].add(inputs[0].dtype))
            return model

        monkeypatch.setattr(models, "create_model", create_and_watch)

    def record(self, name, module, inputs, output):
        self.seen[name].add(output.dtype)


@pytest.mark.slow
def test_bf16_on_cpu_keeps_the_front_end_in_fp32(tmp_path, features, fp32_losses, monkeypatch):
    dtypes = OutputDtypes(monkeypatch)
    losses = train(tmp_path, features, "--precision=bf16")
    assert dtypes.seen == {"logmel": {torch.float32}, "conv": {torch.bfloat16},
                           "head": {torch.bfloat16}}
    assert len(losses) == 3 and np.all(np.isfinite(losses))
    # bf16 keeps ~3 significant digits: the same first step as fp32, to within a few percent.
    np.testing.assert_allclose(losses[0], fp32_losses[0], rtol=0.05)


@pytest.mark.slow
def test_fp16_on_cpu_is_refused_in_one_line(tmp_path, features):
    result = run_script("pytorch/main.py", "train", f"--workspace={tmp_path}",
                        f"--features={features}", "--model_type=Transfer_Cnn6",
                        "--precision=fp16")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert "--precision=fp16 needs a CUDA GPU" in message and "bf16" in message


@pytest.mark.slow
def test_channels_last_on_cpu_trains_like_the_default(tmp_path, features, monkeypatch):
    """Dropout draws its mask in memory order, so a channels-last activation gets another mask:
    the comparison runs without dropout and SpecAugment (frozen base, head trained)."""
    deterministic = ["--freeze_base", "--no_spec_augment"]
    plain = train(tmp_path / "plain", features, *deterministic)
    layouts = []
    create_model = models.create_model

    def create_and_watch(*args, **kwargs):
        model = create_model(*args, **kwargs)
        model.base.conv_block2.conv1.register_forward_hook(
            lambda module, inputs, output: layouts.append(
                output.is_contiguous(memory_format=torch.channels_last)))
        return model

    monkeypatch.setattr(models, "create_model", create_and_watch)
    losses = train(tmp_path / "channels_last", features, "--channels_last", *deterministic)
    assert layouts and all(layouts)  # the convolutions really ran channels-last
    np.testing.assert_allclose(losses, plain, rtol=1e-4)


@pytest.mark.slow
def test_compile_on_cpu_trains_like_eager(tmp_path, features, fp32_losses, monkeypatch):
    """The model as train.py compiles it (mixup weights, SpecAugment's graph breaks), traced by
    dynamo and run through aot_eager: same losses as eager."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    losses = train(tmp_path, features, "--compile")
    np.testing.assert_allclose(losses, fp32_losses, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not RUN_SLOW, reason="inductor on the CPU takes ~1 min; set RUN_SLOW=1")
def test_compile_with_inductor_on_cpu(tmp_path, features, fp32_losses, monkeypatch):
    # Inductor draws dropout masks from its own generator; fallback_random makes it use
    # eager's, so the losses are comparable.
    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    losses = train(tmp_path, features, "--compile")
    np.testing.assert_allclose(losses[0], fp32_losses[0], rtol=1e-4)  # the same forward pass
    # Fused kernels round differently, and Adam's early steps (~lr * sign of the gradient)
    # turn tiny gradient differences into visible ones.
    np.testing.assert_allclose(losses, fp32_losses, rtol=2e-2)


@needs_cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cuda(tmp_path, features, precision, monkeypatch):
    dtypes = OutputDtypes(monkeypatch)
    losses = train(tmp_path, features, "--cuda", f"--precision={precision}")
    expected = torch.bfloat16 if precision == "bf16" else torch.float16
    assert dtypes.seen == {"logmel": {torch.float32}, "conv": {expected}, "head": {expected}}
    assert np.all(np.isfinite(losses))
    checkpoint = os.path.join(run_dir(tmp_path, "checkpoints"), "3_iterations.pth")
    scaler = load_checkpoint_file(checkpoint)["scaler"]
    assert bool(scaler) == (precision == "fp16")  # a grad scaler (with its scale) for fp16 only


@needs_cuda
def test_channels_last_and_compile_on_cuda(tmp_path, features):
    """Like with like: channels-last changes the memory order in which dropout and SpecAugment
    draw their masks, so both runs go without them (frozen base, no SpecAugment); what is left
    is numerics, which a real divergence between eager, channels-last and compiled would break."""
    deterministic = ["--cuda", "--freeze_base", "--no_spec_augment", "--precision=fp32"]
    plain = train(tmp_path / "plain", features, *deterministic, "--no_channels_last",
                  "--no_compile")
    fast = train(tmp_path / "fast", features, *deterministic, "--channels_last", "--compile")
    np.testing.assert_allclose(fast, plain, rtol=1e-3)  # TF32 and kernel choice differ


@needs_cuda
def test_cuda_is_fast_by_default(tmp_path, features, monkeypatch):
    dtypes = OutputDtypes(monkeypatch)
    train(tmp_path, features, "--cuda")
    run = json.load(open(os.path.join(run_dir(tmp_path, "statistics"), "run.json")))
    assert (run["precision"], run["channels_last"], run["compile"]) == ("bf16", True, True)
    assert dtypes.seen["conv"] == {torch.bfloat16}
