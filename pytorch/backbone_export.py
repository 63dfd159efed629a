"""A trained Transfer_<model> as a backbone file in the official PANNs layout.

    python3 pytorch/main.py export --checkpoint_path=CKPT.pth --output=MobileNetV2_sounds.pth

writes {'model': state_dict, 'iteration': N} with the published key names and shapes: the base's
tensors under their published names, and the trained head (fc_transfer) as the tagger's output
layer fc_audioset, one row per label of the source task. `--pretrained_checkpoint_path` then
loads it as it loads Cnn14_mAP=0.431.pth (pytorch/published.py finds the architecture from its
tensors), and the plain tagger it names, built with that many outputs, computes the training
run's embeddings (and, for a multi-label run, its probabilities) exactly: checked before writing.

Beside it, NAME.json (the card): the architecture, the source labels, the source-task metrics on
the run's own holdout, the training run's config (seed, iterations, data digest), the file's
SHA-256 and the command that made it.
"""
import hashlib
import json
import logging
import os
import sys

import torch

from pytorch.checkpoints import card_path, load_state_dict_checked, save_checkpoint_file
from pytorch.evaluate import evaluate_checkpoint
from pytorch.models import TAGGERS, TransferModel
from pytorch.restore import load_trained_model
from utils.config import MULTI_LABEL, SELECTION_METRICS
from utils.utilities import UsageError, atomic_write_text

PARITY_TOLERANCE = 1e-5


def backbone_state_dict(model):
    """The base's tensors under their published names, the head as fc_audioset."""
    state = {key.removeprefix("base."): value.detach().clone()
             for key, value in model.state_dict().items() if key.startswith("base.")}
    state["fc_audioset.weight"] = model.fc_transfer.weight.detach().clone()
    state["fc_audioset.bias"] = model.fc_transfer.bias.detach().clone()
    return state


def check_backbone(model, run, state, source):
    """The tagger built from `state` gives the transfer model's embedding (and multi-label
    probabilities) on a random waveform; returns the largest difference."""
    # The tagger class itself: create_model builds plain taggers with AudioSet's 527 outputs only.
    tagger = TAGGERS[run.model_type.removeprefix("Transfer_")](**run.audio.front_end(),
                                                               classes_num=len(run.labels))
    load_state_dict_checked(tagger, state, source)
    tagger.eval()
    waveform = torch.randn(2, run.audio.clip_samples, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        expected, found = model(waveform), tagger(waveform)
    pairs = [("embedding", "embedding")]
    if run.task == MULTI_LABEL:  # both heads are sigmoids of the same layer
        pairs.append(("clipwise_output", "clipwise_output"))
    return max(float((expected[a] - found[b]).abs().max()) for a, b in pairs)


def export_backbone(checkpoint_path, output, trusted=False, metrics=None, recipe=None):
    """Write the backbone file and its card; returns the card."""
    model, checkpoint, run = load_trained_model(checkpoint_path, "cpu", trusted=trusted)
    if not isinstance(model, TransferModel):
        raise UsageError(f"--checkpoint_path={checkpoint_path}: a {run.model_type} checkpoint "
                         "is already an AudioSet tagger; a backbone is exported from a "
                         "Transfer_<model> training run")
    state = backbone_state_dict(model)
    difference = check_backbone(model, run, state, checkpoint_path)
    if not difference <= PARITY_TOLERANCE:
        raise UsageError(f"the exported backbone differs from the trained model by "
                         f"{difference:.2e}; nothing was written")
    save_checkpoint_file({"model": state, "iteration": checkpoint.get("iteration")}, output)
    with open(output, "rb") as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    card = {
        "file": os.path.basename(output), "sha256": sha256,
        "architecture": run.model_type.removeprefix("Transfer_"),
        "bytes": os.path.getsize(output), "iteration": checkpoint.get("iteration"),
        "source_labels": list(run.labels), "source_task": run.task,
        "source_metrics": metrics or {}, "parity_max_difference": difference,
        "training_run": run.to_dict(),
        "command": " ".join(sys.argv),
    }
    if recipe:  # the whole recipe, when a script made the run and exported it
        card["recipe"] = recipe
    atomic_write_text(json.dumps(card, indent=1) + "\n", card_path(output))
    logging.info("backbone %s: %s, %d source labels, SHA-256 %s", output, card["architecture"],
                 len(run.labels), sha256)
    return card


def run_backbone_export(args):
    """--output=X.pth: the backbone in the official layout, scored on its run's own holdout."""
    result = evaluate_checkpoint(args.checkpoint_path, write=False,
                                 trust_checkpoint=args.trust_checkpoint)
    metrics = {key: float(result[key]) for key in SELECTION_METRICS[result["task"]]}
    metrics.update(selection=result["selection"], clips=int(result["clips_num"]))
    card = export_backbone(args.checkpoint_path, args.output, args.trust_checkpoint, metrics,
                           args.recipe)
    scores = ", ".join(f"{key} {value:.4f}" for key, value in metrics.items()
                       if isinstance(value, float))
    print(f"Wrote {args.output}: {card['architecture']} in the official PANNs layout, "
          f"{len(card['source_labels'])} source labels, {card['bytes'] / 2**20:.1f} MiB, SHA-256 "
          f"{card['sha256']}; {scores} on {metrics['selection']} ({metrics['clips']} clips); "
          f"card {os.path.splitext(args.output)[0]}.json")
