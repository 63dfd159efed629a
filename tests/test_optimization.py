"""Fine-tuning options: the schedule's rates, layer-wise and no-decay groups, clipping, and a
resumed run that continues the schedule exactly."""
import os

import numpy as np
import pytest
import torch

from helpers import load_statistics, run_dir, train
from pytorch.checkpoints import load_checkpoint_file
from pytorch.models import create_model
from pytorch.optimization import (clip_gradients, layers, lr_factor, make_optimizer,
                                  parameter_groups)
from utils.config import AudioConfig, RunConfig
from utils.utilities import UsageError


def run_config(**options):
    return RunConfig(model_type="Transfer_Cnn6", task="single_label", labels=["a", "b"],
                     audio=AudioConfig(clip_samples=32000), features="", holdout_fold=1,
                     loss_type="clip_nll", **dict(dict(learning_rate=1e-3, stop_iteration=10),
                                                  **options))


def model():
    return create_model("Transfer_Cnn6", **AudioConfig().front_end(), classes_num=2,
                        task="single_label")


def test_warmup_then_cosine_or_linear_decay_to_zero():
    cosine = run_config(lr_schedule="cosine", warmup_iterations=4)
    assert [lr_factor(cosine, i) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(cosine, 4) == 1.0 and lr_factor(cosine, 7) == pytest.approx(0.5)
    assert lr_factor(cosine, 10) == pytest.approx(0.0, abs=1e-12)
    linear = run_config(lr_schedule="linear", warmup_iterations=0, decay_iterations=20)
    assert lr_factor(linear, 5) == pytest.approx(0.75)  # decays to 0 at 20, not at the stop
    assert all(lr_factor(run_config(), i) == 1.0 for i in range(12))  # the recipe: constant


def test_warm_up_applies_under_the_constant_rate_too():
    constant = run_config(warmup_iterations=4)
    assert [lr_factor(constant, i) for i in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_a_stop_past_the_end_of_the_decay_is_refused():
    with pytest.raises(UsageError, match=r"--stop_iteration=30: past the end of the cosine "
                                         r"decay \(iteration 20\), where the rate is 0"):
        make_optimizer(model(), run_config(lr_schedule="cosine", decay_iterations=20,
                                           stop_iteration=30), torch.device("cpu"))


def test_a_decaying_run_resumed_with_another_end_is_refused_before_it_trains(tmp_path, features):
    """The decay end is fixed when a run starts: a larger --stop_iteration on resume would have
    moved it (the rate went back up); restating it with --decay_iterations is accepted."""
    common = ["--lr_schedule=cosine", "--eval_every=2", "--save_every=2"]
    train(tmp_path / "a", features, *common, "--stop_iteration=2")
    with pytest.raises(UsageError, match=r"this run's cosine decay ends at iteration 2, fixed "
                                         r"when it started; --stop_iteration=4 "
                                         r"--decay_iterations=0 would move it"):
        train(tmp_path / "a", features, *common, "--stop_iteration=4", "--resume_iteration=2")
    assert [entry["iteration"] for entry in load_statistics(tmp_path / "a")["train"]] == [1, 2]
    # started with its end at 4: resumed to 4 with or without restating it
    train(tmp_path / "b", features, *common, "--stop_iteration=2", "--decay_iterations=4")
    train(tmp_path / "b", features, *common, "--stop_iteration=4", "--resume_iteration=2")
    rates = [entry["learning_rate"] for entry in load_statistics(tmp_path / "b")["train"]]
    assert rates == pytest.approx([1e-3 * f for f in (1.0, 0.8535534, 0.5, 0.1464466)])


def test_a_refused_option_claims_no_run_folder(tmp_path, features):
    with pytest.raises(UsageError, match="--warmup_iterations=5: must end before"):
        train(tmp_path, features, "--lr_schedule=cosine", "--warmup_iterations=5",
              "--stop_iteration=2")
    assert not (tmp_path / "statistics").exists() and not (tmp_path / "checkpoints").exists()
    train(tmp_path, features, "--lr_schedule=cosine", "--warmup_iterations=1",
          "--stop_iteration=2", "--eval_every=2", "--save_every=2")  # the corrected command


def test_layer_decay_scales_each_block_below_the_head_and_decay_skips_biases_and_norms():
    net = model()
    groups = parameter_groups(net, run_config(layer_decay=0.5, weight_decay=0.01,
                                              optimizer="adamw"))
    names = {id(p): name for name, p in net.named_parameters() if p.requires_grad}
    by_name = {names[id(p)]: group for group in groups for p in group["params"]}
    assert sorted(by_name) == sorted(names.values())  # every trainable parameter once
    assert "base.logmel_extractor.melW" not in by_name  # the frozen front end
    assert by_name["fc_transfer.weight"]["base_lr"] == 1e-3
    assert by_name["base.fc1.weight"]["base_lr"] == pytest.approx(5e-4)
    assert by_name["base.conv_block4.conv1.weight"]["base_lr"] == pytest.approx(2.5e-4)
    depth = [layer for layer in layers(net)].index(net.base.bn0)
    assert by_name["base.bn0.weight"]["base_lr"] == pytest.approx(1e-3 * 0.5 ** depth)
    for name, group in by_name.items():
        is_matrix = net.get_parameter(name).ndim > 1
        assert group["weight_decay"] == (0.01 if is_matrix else 0.0), name
    assert len(parameter_groups(net, run_config())) == 1  # the recipe's single group


def test_adam_weight_decay_and_warmup_beyond_the_decay_are_refused():
    with pytest.raises(UsageError, match="--weight_decay=0.01: .* use --optimizer=adamw"):
        make_optimizer(model(), run_config(weight_decay=0.01), torch.device("cpu"))
    with pytest.raises(UsageError, match="--warmup_iterations=10: must end before"):
        make_optimizer(model(), run_config(lr_schedule="cosine", warmup_iterations=10),
                       torch.device("cpu"))


def test_clipping_bounds_the_global_gradient_norm():
    net = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    (net(torch.full((2, 4), 100.0)).sum()).backward()
    before = torch.nn.utils.get_total_norm([p.grad for p in net.parameters()])
    clip_gradients(net, optimizer, torch.amp.GradScaler("cpu", enabled=False), 1.0)
    after = torch.nn.utils.get_total_norm([p.grad for p in net.parameters()])
    assert before > 10 and after == pytest.approx(1.0, rel=1e-5)


OPTIONS = ["--optimizer=adamw", "--weight_decay=0.05", "--lr_schedule=cosine",
           "--warmup_iterations=2", "--layer_decay=0.7", "--grad_clip_norm=0.5"]


@pytest.mark.slow
def test_a_resumed_run_continues_the_schedule_exactly(tmp_path, features):
    common = ["--stop_iteration=6", "--eval_every=3", "--save_every=3", *OPTIONS]
    train(tmp_path / "straight", features, *common)
    train(tmp_path / "resumed", features, *common[1:], "--stop_iteration=3",
          "--decay_iterations=6")  # interrupted at 3 of a schedule that runs to 6
    train(tmp_path / "resumed", features, *common, "--decay_iterations=6",
          "--resume_iteration=3")
    straight, resumed = (load_statistics(tmp_path / name) for name in ("straight", "resumed"))
    rates = [e["learning_rate"] for e in straight["train"]]
    # warm-up over 2 steps, then cosine from step 2 to 0 at step 6
    assert rates == pytest.approx([1e-3 * f for f in (0.5, 1.0, 1.0, 0.8535534, 0.5,
                                                      0.1464466)])
    assert [e["learning_rate"] for e in resumed["train"]] == pytest.approx(rates)
    np.testing.assert_allclose([e["loss"] for e in resumed["train"]],
                               [e["loss"] for e in straight["train"]], rtol=1e-5)
    final = [load_checkpoint_file(os.path.join(run_dir(tmp_path / name, "checkpoints"),
                                               "6_iterations.pth")) for name in
             ("straight", "resumed")]
    assert final[0]["config"]["lr_schedule"] == "cosine"
    assert final[0]["config"]["layer_decay"] == 0.7
    for key in final[0]["model"]:
        torch.testing.assert_close(final[0]["model"][key], final[1]["model"][key],
                                   rtol=1e-5, atol=1e-6)
    weights = final[0]["model"]["fc_transfer.weight"]
    default = tmp_path / "default"
    train(default, features, "--stop_iteration=6", "--eval_every=3", "--save_every=3")
    plain = load_checkpoint_file(os.path.join(run_dir(default, "checkpoints"),
                                              "6_iterations.pth"))["model"]["fc_transfer.weight"]
    assert not torch.allclose(weights, plain)  # the options do change the training
