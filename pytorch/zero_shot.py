"""Zero-shot IAB baseline: the published AudioSet tagger's 527 outputs mapped to the IAB labels.

    python3 pytorch/main.py zero_shot --workspace=WS --features=H5 \\
        --pretrained_checkpoint_path=Cnn14_mAP=0.431.pth [--holdout_fold=1] \\
        [--iab_labels=5|20 | --mapping=CSV] [--threshold=0.5] [--batch_size=32] [--cuda]

No training: a label's probability is the max over the AudioSet classes mapped to it (0 when no
class is), after the ancestor rule of packing (utils/iab_labels.drop_present_ancestors: a class
present at --threshold is not counted when one of its ontology descendants is present too), and
the holdout fold is scored exactly as a trained model's would be (--holdout_fold=all
scores every clip: untrained, all of them are unseen). The metrics go to
WS/results/zero_shot/holdout_fold=F/<label_set>/metrics.json (<label_set>: iab5 or iab20, plus
_mapping=<name> with --mapping).
"""
import logging
import os

import numpy as np

from pytorch.models import TAGGERS, create_model
from pytorch.published import identify_checkpoint, require_audioset_head
from pytorch.pytorch_utils import forward_loader, make_loader, resolve_precision, select_device
from utils import config
from utils.data_generator import (EvaluateSampler, WaveformDataset, features_flag,
                                  features_value, split_indices)
from utils.arguments import add_flags
from utils.config import AudioConfig
from utils.iab_labels import (LABEL_SET_SIZES, drop_present_ancestors, load_label_set,
                              mapping_matrix)
from utils.iab_sources import mapping_used
from utils.metrics import compute_metrics
from utils.runs import default_features_path
from utils.splits import packed_subsets
from utils.utilities import UsageError, create_logging, progress, require_file, write_json

# Only the plain taggers have the 527 AudioSet outputs the mapping reads.
AUDIOSET_TAGGERS = list(TAGGERS)


def map_audioset_to_labels(probabilities, mapping_matrix):
    """(N, 527) AudioSet probabilities -> (N, C): per label, the max over its mapped classes.

    mapping_matrix: (527, C), nonzero where a class maps to a label. A label no class maps to
    gets probability 0.
    """
    probabilities = np.asarray(probabilities)
    mapping_matrix = np.asarray(mapping_matrix)
    if probabilities.ndim != 2 or mapping_matrix.ndim != 2 \
            or probabilities.shape[1] != mapping_matrix.shape[0]:
        raise ValueError(f"probabilities {probabilities.shape} and mapping matrix "
                         f"{mapping_matrix.shape} do not fit: expected (N, K) and (K, C)")
    label_probabilities = np.zeros((len(probabilities), mapping_matrix.shape[1]),
                                   dtype=probabilities.dtype)
    for label in range(mapping_matrix.shape[1]):
        classes = np.flatnonzero(mapping_matrix[:, label])
        if len(classes):
            label_probabilities[:, label] = probabilities[:, classes].max(axis=1)
    return label_probabilities


def iab_label_set_of(labels, iab_labels, features_path):
    """The IAB set size (5 or 20) whose names the packed file's labels are, in the same order."""
    if iab_labels and labels == load_label_set(iab_labels):
        return iab_labels
    if iab_labels:
        raise UsageError(
            f"{features_flag(features_path)}: its labels ({'; '.join(labels)}) are not the "
            f"{iab_labels}-label IAB set that --iab_labels={iab_labels} maps to "
            f"({'; '.join(load_label_set(iab_labels))}); pack the file with "
            f"--iab_labels={iab_labels} or pick the set it was packed with")
    for size in LABEL_SET_SIZES:
        if labels == load_label_set(size):
            return size
    raise UsageError(
        f"{features_flag(features_path)}: its labels ({'; '.join(labels)}) are not an IAB label set "
        "(metadata/iab_labels_5.csv or _20.csv, in that order), so AudioSet classes cannot be "
        "mapped to them; pack with utils/features.py pack_audioset_to_hdf5 --iab_labels=5|20 "
        "(or pack_csv_to_hdf5 --labels=5|20)")


def results_path(workspace, holdout_fold, num_labels, mapping_path):
    label_set = f"iab{num_labels}"
    if mapping_path:  # a custom mapping must not overwrite the committed mapping's results
        label_set += "_mapping=" + os.path.splitext(os.path.basename(mapping_path))[0]
    return os.path.join(workspace, "results", "zero_shot", f"holdout_fold={holdout_fold}",
                        label_set, "metrics.json")


def zero_shot_tagger(args, info, features, device):
    """(model_type, the official tagger with its checkpoint's front end, on `device`)."""
    found = identify_checkpoint(args.pretrained_checkpoint_path, args.trust_checkpoint,
                                model_type=args.model_type)
    require_audioset_head(found, args.pretrained_checkpoint_path, "--pretrained_checkpoint_path")
    if found.audio["sample_rate"] != info["sample_rate"]:
        raise UsageError(f"--pretrained_checkpoint_path={args.pretrained_checkpoint_path}: "
                         f"{found.name} takes {found.audio['sample_rate']} Hz audio, but "
                         f"{features_flag(features)} holds {info['sample_rate']} Hz; repack it "
                         f"with utils/features.py --sample_rate={found.audio['sample_rate']}")
    model_type = args.model_type or found.name
    if model_type not in AUDIOSET_TAGGERS:
        raise UsageError(f"--model_type={model_type}: zero-shot needs a plain AudioSet tagger "
                         f"(its 527 outputs), one of {', '.join(AUDIOSET_TAGGERS)}")
    # The tagger's front end as its checkpoint holds it (pytorch/published.py).
    audio = AudioConfig(**dict(found.audio, clip_samples=info["clip_samples"]))
    model = create_model(
        model_type, **audio.front_end(), classes_num=config.AUDIOSET_CLASSES_NUM,
        task=config.MULTI_LABEL, pretrained_checkpoint_path=args.pretrained_checkpoint_path,
        trust_checkpoint=args.trust_checkpoint)
    return model_type, model.to(device)


def run_zero_shot(args):
    """Score the mapped AudioSet tagger on the holdout fold; returns (metrics dict, JSON path)."""
    require_file(args.pretrained_checkpoint_path, "--pretrained_checkpoint_path")
    if args.mapping:
        require_file(args.mapping, "--mapping")
    if args.holdout_fold == "filtered":
        raise UsageError("--holdout_fold=filtered: zero-shot scores a fold (1..10), every clip "
                         "(all), or the test set of a file packed with subsets (subsets)")
    features = args.features or default_features_path(args.workspace)
    holdout_fold = args.holdout_fold or 1
    threshold = args.threshold or 0.5
    create_logging(os.path.join(args.workspace, "logs", "zero_shot"), "zero_shot")
    dataset = WaveformDataset(features, in_memory=False)  # only the holdout fold is read
    info = dataset.info
    num_labels = iab_label_set_of(info["labels"], args.iab_labels, features)
    if info["task"] != config.MULTI_LABEL:
        raise UsageError(f"{features_flag(features)}: packed as {info['task']}; the IAB labels "
                         "are multi-label, repack it")
    matrix = mapping_matrix(num_labels, args.mapping)
    if holdout_fold == "all":
        holdout_indices = np.arange(len(dataset))
    elif holdout_fold == "subsets":  # the seed data's test set, as fine-tuning scores it
        holdout_indices = packed_subsets(info, features)["test"]
    else:
        holdout_indices = split_indices(info["folds"], holdout_fold)[1]

    device = select_device(args.cuda)
    model_type, model = zero_shot_tagger(args, info, features, device)
    loader = make_loader(dataset, EvaluateSampler(holdout_indices, args.batch_size),
                         args.num_workers, seed=0, device=device)
    _, audioset_probabilities, targets = forward_loader(
        model, progress(loader, desc="zero-shot", unit="batch"), device, config.MULTI_LABEL,
        resolve_precision(args.precision, device))
    # The ancestor rule, as packing applies it to the targets: present ancestors do not count.
    probabilities = map_audioset_to_labels(
        drop_present_ancestors(audioset_probabilities, threshold), matrix)
    metrics = compute_metrics(config.MULTI_LABEL, probabilities, targets, threshold)

    labels = info["labels"]
    output_path = results_path(args.workspace, holdout_fold, num_labels, args.mapping)
    record = dict(metrics, labels=labels, label_set=f"iab{num_labels}",
                  mapping=mapping_used(num_labels, args.mapping), clips=len(targets),
                  holdout_fold=holdout_fold, features=features_value(info["files"]),
                  model_type=model_type,
                  pretrained_checkpoint_path=os.path.abspath(args.pretrained_checkpoint_path))
    write_json(record, output_path)

    logging.info("zero-shot %s, holdout fold %s (%d clips), %d IAB labels: mAP %.4f, macro-F1 "
                 "%.4f, micro-F1 %.4f (threshold %g)", model_type, holdout_fold,
                 len(targets), num_labels, metrics["mAP"], metrics["macro_f1"],
                 metrics["micro_f1"], threshold)
    for label, ap, f1, positives in zip(labels, metrics["per_class_ap"], metrics["per_class_f1"],
                                        (targets >= 0.5).sum(axis=0)):
        logging.info("  %-28s AP %.4f  F1 %.4f  (%d positive clips)", label, ap, f1, positives)
    print(f"Wrote {output_path}")
    return metrics, output_path


def add_zero_shot_parser(subparsers):
    parser = subparsers.add_parser(
        "zero_shot", help="score the pretrained AudioSet tagger, mapped to IAB labels, untrained")
    add_flags(parser, "workspace", "features", "pretrained_checkpoint_path", "model_type",
              "holdout_fold", "threshold", "batch_size", "num_workers", "cuda", "precision",
              "trust_checkpoint", required=("workspace", "pretrained_checkpoint_path"))
    parser.add_argument("--iab_labels", type=int, choices=LABEL_SET_SIZES, default=None,
                        help="the IAB set the file holds (default: recognised from its labels)")
    parser.add_argument("--mapping", default=None,
                        help="your own AudioSet->IAB mapping CSV (default "
                             "metadata/audioset_to_iab_N.csv)")
    parser.set_defaults(handler=run_zero_shot)
    return parser
