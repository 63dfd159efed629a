"""Which explanation is faithful: the deletion test of `main.py explain`'s two methods.

    python3 scripts/explain_deletion.py --checkpoint_path=CKPT --features=WS/features/waveform.h5
        [--holdout_fold=1] [--fractions=0.05,0.1,0.2] [--random_orders=3] [--output=deletion.json]

For every clip of the holdout fold and its predicted label: the relevance of each patch of the
log-mel by occlusion and by gradient x input (pytorch/explain.py); then the label's probability
after silencing the most relevant patches (5, 10, 20% of them), against silencing as many
patches in random orders. A faithful method's deletion lowers the probability more than random
deletion does. Prints and writes the mean probability left (as a share of the clip's own) per
method and fraction, and on how many clips the method's deletion beat the random one.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = REPO_DIR

from pytorch.explain import METHODS, Explainer, delete_patches, patch_grid, patch_scores  # noqa: E402
from pytorch.predictor import load_predictor  # noqa: E402
from utils.data_generator import WaveformDataset  # noqa: E402
from utils.utilities import atomic_write_text, progress, run_cli  # noqa: E402


def deletion_test(explainer, waveforms, fractions, random_orders, seed=0):
    """{method or 'random': (clips, fractions) probabilities left, as shares of each clip's}."""
    rng = np.random.default_rng(seed)
    found = {method: [] for method in (*METHODS, "random")}
    for waveform in progress(waveforms, desc="clips", unit="clip"):
        label = int(np.argmax(explainer.predictor(waveform[None])["probabilities"][0]))
        patches = len(patch_grid(*explainer.logmel(waveform).shape[2:]))
        for method in METHODS:
            relevance, _ = explainer.explain(waveform, label, method)
            order = np.argsort(-patch_scores(relevance), kind="stable")
            left = delete_patches(explainer, waveform, label, order, fractions)
            found[method].append(left[1:] / left[0])
        randoms = [delete_patches(explainer, waveform, label, rng.permutation(patches), fractions)
                   for _ in range(random_orders)]
        found["random"].append(np.mean([left[1:] / left[0] for left in randoms], axis=0))
    return {key: np.array(value) for key, value in found.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint_path", required=True)
    parser.add_argument("--features", required=True)
    parser.add_argument("--holdout_fold", type=int, default=1)
    parser.add_argument("--fractions", default="0.05,0.1,0.2")
    parser.add_argument("--random_orders", type=int, default=3)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    fractions = [float(value) for value in args.fractions.split(",")]
    explainer = Explainer(load_predictor(args.checkpoint_path))
    dataset = WaveformDataset(args.features)
    clips = np.flatnonzero(np.asarray(dataset.info["folds"]) == args.holdout_fold)
    clip_samples = explainer.run.audio.clip_samples
    waveforms = [np.asarray(dataset[index]["waveform"], dtype=np.float32)[:clip_samples]
                 for index in clips]
    started = time.time()
    found = deletion_test(explainer, waveforms, fractions, args.random_orders)
    result = {"command": " ".join(["scripts/explain_deletion.py"] + sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d"), "clips": len(clips),
              "fractions": fractions, "seconds": round(time.time() - started, 1),
              "probability_left": {key: value.mean(axis=0).round(4).tolist()
                                   for key, value in found.items()},
              "clips_below_random": {method: (found[method] < found["random"]).sum(axis=0).tolist()
                                     for method in METHODS}}
    print(json.dumps(result, indent=2))
    if args.output:
        atomic_write_text(json.dumps(result, indent=2) + "\n", args.output)


if __name__ == "__main__":
    run_cli(main)
