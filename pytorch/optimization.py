"""The optimizer of a training run and the fine-tuning options the field uses, all opt-in:

- the default is the published recipe: Adam (AMSGrad) at a constant --learning_rate;
- --optimizer=adamw with --weight_decay: decoupled weight decay (AdamW, AMSGrad as the default),
  never on biases and normalisation weights (1-D tensors), as BERT, timm and EfficientAT do;
- --layer_decay=D: layer-wise learning-rate decay. The new head trains at --learning_rate; each
  parameter-holding block of the backbone below it at D times the one above (Cnn14: fc1 at
  lr*D, conv_block6 at lr*D^2, ..., bn0 at lr*D^8), so the pretrained early layers move least;
- --warmup_iterations=W: a linear warm-up from 0 over W iterations (under any schedule);
  --lr_schedule=cosine|linear then decays the rate to 0 at --decay_iterations (default
  --stop_iteration, as the run started: a resumed run may not move it);
- --grad_clip_norm=C: gradients clipped to a global L2 norm of C (after unscaling under fp16).

The learning rate of an iteration is a function of the iteration alone (each group keeps its
`base_lr`), so a resumed run continues the schedule exactly, and the options are RunConfig
fields: in every checkpoint and run.json.
"""
import math

import torch

from utils.utilities import UsageError


def check_options(run):
    """One-line errors for combinations that cannot do what they say."""
    if run.linear_probe and run.layer_decay != 1.0:
        # The probe applies the optimizer, weight decay, schedule, warm-up and clipping to its
        # head; layer-wise decay needs layers below the one that trains.
        raise UsageError(f"--layer_decay={run.layer_decay:g}: a linear probe trains one layer, "
                         "the head, with nothing below it to decay; drop --layer_decay")
    if run.head_init == "probe" and not run.pretrained_checkpoint_path:
        raise UsageError("--head_init=probe: needs --pretrained_checkpoint_path, the backbone "
                         "whose embeddings the head is fitted on")
    if run.head_init == "probe" and run.linear_probe:
        raise UsageError("--head_init=probe: a linear probe fits its head anyway; drop one")
    if run.weight_decay > 0 and run.optimizer != "adamw":
        raise UsageError(f"--weight_decay={run.weight_decay:g}: Adam's weight decay is an L2 "
                         "term that its scaling undoes; use --optimizer=adamw")
    end = run.decay_end
    if run.lr_schedule != "constant" and run.stop_iteration > end:
        raise UsageError(f"--stop_iteration={run.stop_iteration}: past the end of the "
                         f"{run.lr_schedule} decay (iteration {end}), where the rate is 0; "
                         "lower --stop_iteration or raise --decay_iterations")
    if run.lr_schedule != "constant" and run.warmup_iterations >= end:
        raise UsageError(f"--warmup_iterations={run.warmup_iterations}: must end before the "
                         f"decay does (iteration {end}); lower it or raise "
                         "--decay_iterations")


def layers(model):
    """The model's trainable blocks from the output down: the transfer head, then the
    backbone's top-level modules that train, in reverse order of definition (the published
    order runs from the front end to fc1). A transfer model's unused AudioSet layer comes last
    (it gets no gradient, so its rate changes nothing)."""
    def holding(modules):
        return [module for module in modules
                if any(parameter.requires_grad for parameter in module.parameters())]

    if hasattr(model, "base") and hasattr(model, "fc_transfer"):
        unused = model.base.audioset_classifier()  # a transfer model never reads it
        base = [module for module in model.base.children() if module is not unused]
        return [model.fc_transfer] + holding(reversed(base)) + [unused]
    return holding(reversed(list(model.children())))


def parameter_groups(model, run):
    """Optimizer groups: one per (layer depth, decayed or not), each with its base_lr. Without
    layer decay or weight decay that is one group: the recipe's layout, so checkpoints of
    earlier runs resume as they were saved."""
    groups = {}
    for depth, layer in enumerate(layers(model)):
        scale = run.layer_decay ** depth
        for parameter in layer.parameters():
            if not parameter.requires_grad:
                continue
            decayed = run.weight_decay > 0 and parameter.ndim > 1  # not biases nor norms
            key = (depth if run.layer_decay != 1.0 else 0, decayed)
            if key not in groups:
                groups[key] = {"params": [], "base_lr": run.learning_rate * scale,
                               "lr": run.learning_rate * scale,
                               "weight_decay": run.weight_decay if decayed else 0.0}
            groups[key]["params"].append(parameter)
    return [groups[key] for key in sorted(groups)]


def make_optimizer(model, run, device):
    """Adam (the recipe) or AdamW, AMSGrad, over the trainable parameters in their groups; one
    fused kernel on CUDA."""
    check_options(run)
    optimizer = torch.optim.AdamW if run.optimizer == "adamw" else torch.optim.Adam
    return optimizer(parameter_groups(model, run), lr=run.learning_rate, betas=(0.9, 0.999),
                     eps=1e-8, amsgrad=True, fused=True if device.type == "cuda" else None)


def lr_factor(run, iteration):
    """The share of each group's base rate at step `iteration` (0: the first step)."""
    if iteration < run.warmup_iterations:  # under any schedule, the constant one included
        return (iteration + 1) / run.warmup_iterations
    if run.lr_schedule == "constant":
        return 1.0
    progress = min(1.0, (iteration - run.warmup_iterations)
                   / max(1, run.decay_end - run.warmup_iterations))
    if run.lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def set_learning_rates(optimizer, run, iteration):
    factor = lr_factor(run, iteration)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


def clip_gradients(model, optimizer, scaler, max_norm):
    """Clip the gradients' global norm to max_norm (0: off); under fp16 (a `scaler`) they are
    unscaled first, so the norm is the true one."""
    if max_norm > 0:
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
