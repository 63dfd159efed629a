"""Fine-tune PANNs on a packed HDF5 (GTZAN genres, IAB labels, or your own audio).

    python3 pytorch/main.py train --workspace=WS --holdout_fold=1 --model_type=Transfer_Cnn14 \\
        --pretrained_checkpoint_path=Cnn14_mAP=0.431.pth --loss_type=clip_nll \\
        --augmentation=mixup --learning_rate=1e-4 --batch_size=32 --stop_iteration=2000 --cuda
"""
import argparse
import os
import sys

if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from utils import config
from utils.arguments import (Parser, add_trust_flag, fold_number, holdout_fold, non_negative_int,
                             positive_float, positive_int, probability, str2bool)
from utils.runs import default_features_path
from utils.utilities import UsageError, require_file, run_cli


def add_audio_flags(parser):
    group = parser.add_argument_group(
        "front end (default: what the pretrained checkpoint holds, else Cnn14's "
        f"{config.WINDOW_SIZE}/{config.HOP_SIZE}/{config.MEL_BINS} mels/"
        f"{config.FMIN}-{config.FMAX} Hz; the sample rate comes from the HDF5)")
    group.add_argument("--window_size", type=positive_int, default=None)
    group.add_argument("--hop_size", type=positive_int, default=None)
    group.add_argument("--mel_bins", type=positive_int, default=None)
    group.add_argument("--fmin", type=non_negative_int, default=None)
    group.add_argument("--fmax", type=positive_int, default=None)


def add_train_parser(subparsers):
    parser = subparsers.add_parser("train", help="train one holdout fold, all ten, or the filtered split")
    parser.add_argument("--dataset_dir", default=None, help="accepted for the original recipe; unused")
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--features", default=None,
                        help="packed HDF5 (default WS/features/waveform.h5)")
    parser.add_argument("--mini_data", action="store_true",
                        help="read WS/features/minidata_waveform.h5")
    parser.add_argument("--holdout_fold", type=holdout_fold, default=1,
                        help="1..10, or 'all' to train the ten folds in turn and summarise them")
    parser.add_argument("--split", default="folds", choices=["folds", "filtered", "subsets"],
                        help="folds: the HDF5's 10 folds; filtered: GTZAN's artist-filtered "
                             "train/valid/test lists (Kereliuk, Sturm & Larsen 2015); subsets: "
                             "the train/valid/test sets the HDF5 was packed with (seed CSVs)")
    parser.add_argument("--test_fold", type=fold_number, default=None,
                        help="with --split=folds: a test fold, scored once at the end (neither "
                             "trains nor selects)")
    parser.add_argument("--sampler", default="shuffle", choices=["shuffle", "balanced"],
                        help="balanced: each batch draws every label (and 'no label') equally "
                             "often, for imbalanced multi-label data")
    parser.add_argument("--model_type", default=None,
                        help="Transfer_<published PANNs model> (default: Transfer_ + the model the "
                             "pretrained checkpoint holds, else Transfer_Cnn14)")
    parser.add_argument("--pretrained_checkpoint_path", default=None,
                        help="an official PANNs checkpoint: its tensors give the architecture "
                             "and front end")
    parser.add_argument("--freeze_base", nargs="?", const=True, default=False, type=str2bool)
    parser.add_argument("--loss_type", default=None,
                        help="clip_nll (single-label) or clip_bce (multi-label); default by task")
    parser.add_argument("--augmentation", default="mixup", choices=["none", "mixup"])
    parser.add_argument("--learning_rate", type=positive_float, default=None,
                        help="default 1e-4 (1e-3 with --linear_probe)")
    parser.add_argument("--linear_probe", action="store_true",
                        help="fit only a linear head on the frozen backbone's embeddings, "
                             "computed once and cached beside the HDF5 (see pytorch/linear_probe.py)")
    parser.add_argument("--batch_size", type=positive_int, default=32)
    parser.add_argument("--resume_iteration", type=non_negative_int, default=0)
    parser.add_argument("--stop_iteration", type=positive_int, default=2000)
    parser.add_argument("--eval_every", type=positive_int, default=200)
    parser.add_argument("--save_every", type=positive_int, default=2000)
    parser.add_argument("--select_by", default=None, choices=["accuracy", "mAP", "macro_f1"],
                        help="validation metric for --keep_best and early stopping (default: "
                             "accuracy, or mAP for multi-label)")
    parser.add_argument("--keep_best", action="store_true",
                        help="also keep best.pth, the checkpoint with the best validation score")
    parser.add_argument("--early_stop_patience", type=non_negative_int, default=0,
                        help="stop after this many evaluations without improvement (0: never)")
    parser.add_argument("--threshold", type=probability, default=0.5,
                        help="multi-label decision threshold")
    parser.add_argument("--cuda", action="store_true", help="use the GPU when there is one")
    # Fast by default on a GPU: bf16, channels-last and torch.compile unless turned off.
    parser.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16"],
                        help="default bf16 with --cuda on a GPU, else fp32")
    parser.add_argument("--compile", default=None, action=argparse.BooleanOptionalAction,
                        help="torch.compile the model (default: on with --cuda on a GPU)")
    parser.add_argument("--channels_last", default=None, action=argparse.BooleanOptionalAction,
                        help="channels-last convolutions (default: on with --cuda on a GPU)")
    parser.add_argument("--no_spec_augment", action="store_true", help="switch SpecAugment off")
    parser.add_argument("--sync_batchnorm", action="store_true",
                        help="under torchrun on GPUs: BatchNorm statistics over the global batch "
                             "(SyncBatchNorm) instead of each GPU's share")
    parser.add_argument("--num_workers", type=non_negative_int, default=2,
                        help="loader processes when clips stream from the HDF5 (data held in "
                             "memory is gathered on the device without workers)")
    parser.add_argument("--in_memory", default="auto", choices=["auto", "yes", "no"],
                        help="read the whole HDF5 into RAM (auto: when it fits)")
    parser.add_argument("--seed", type=non_negative_int, default=1234)
    parser.add_argument("--run_name", default="",
                        help="a name that keeps this run apart from others with the same folder "
                             "flags (e.g. one per learning rate of a sweep)")
    add_trust_flag(parser)
    add_audio_flags(parser)
    parser.set_defaults(handler=run_train)


def validate_train_args(args):
    """The checks that involve several flags or files; single values are checked by their types."""
    if args.split in ("filtered", "subsets"):
        args.holdout_fold = args.split  # the run's folder name: holdout_fold=filtered
    if args.test_fold is not None and args.split != "folds":
        raise UsageError(f"--test_fold={args.test_fold} applies to --split=folds; --split="
                         f"{args.split} has its own test set")
    if args.resume_iteration > args.stop_iteration:
        raise UsageError(f"--resume_iteration={args.resume_iteration}: must be at most "
                         f"--stop_iteration={args.stop_iteration}")
    if args.run_name and (os.sep in args.run_name or args.run_name.startswith(".")):
        raise UsageError(f"--run_name={args.run_name}: use a plain name (no '/', not starting with '.')")
    args.in_memory = {"auto": "auto", "yes": True, "no": False}[args.in_memory]
    args.features = args.features or default_features_path(args.workspace, args.mini_data)
    if args.pretrained_checkpoint_path:
        require_file(args.pretrained_checkpoint_path, "--pretrained_checkpoint_path")


def run_train(args):
    validate_train_args(args)
    if args.holdout_fold == "all":
        from pytorch.cross_validation import train_all_folds
        train_all_folds(args)
    else:
        from pytorch.train import train
        train(args)


def run_list_runs(args):
    """List the runs of a workspace from their run.json; --latest_checkpoint prints one path."""
    from utils.runs import checkpoint_path, run_dirs, saved_iterations
    from utils.statistics_files import parse_filters, require_statistics

    runs = require_statistics(args.workspace, args.holdout_fold, args.model_type,
                              parse_filters(args.filter))
    rows = []
    for run in runs:
        checkpoints_dir = run_dirs(args.workspace, run.config)["checkpoints"] if run.config else ""
        saved = saved_iterations(checkpoints_dir) if checkpoints_dir else []
        rows.append((run, checkpoint_path(checkpoints_dir, saved[-1]) if saved else ""))
    if args.latest_checkpoint:
        with_checkpoints = [(run, path) for run, path in rows if path]
        if not with_checkpoints:
            raise UsageError(f"--workspace={args.workspace}: the matching runs have no checkpoint yet")
        print(max(with_checkpoints, key=lambda row: os.path.getmtime(row[1]))[1])
        return
    for run, newest in rows:
        described = " ".join(f"{key}={value}" for key, value in run.info.items())
        print(f"{described}\n    statistics {run.path}\n    last checkpoint {newest or '-'}")


def add_runs_parser(subparsers):
    parser = subparsers.add_parser("runs", help="list a workspace's runs (from their run.json)")
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--holdout_fold", default=None, help="a fold number, 'filtered' or 'all'")
    parser.add_argument("--model_type", default=None)
    parser.add_argument("--filter", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="keep runs whose run.json has KEY=VALUE, e.g. learning_rate=0.0005")
    parser.add_argument("--latest_checkpoint", action="store_true",
                        help="print only the newest last checkpoint of the matching runs")
    parser.set_defaults(handler=run_list_runs)


def build_parser():
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="mode", required=True)
    add_train_parser(subparsers)
    from pytorch.evaluate import add_evaluate_parser
    from pytorch.inference import add_inference_parser
    from pytorch.zero_shot import add_zero_shot_parser
    add_evaluate_parser(subparsers)
    add_inference_parser(subparsers)
    add_zero_shot_parser(subparsers)
    add_runs_parser(subparsers)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # --holdout_fold=all re-runs the user's own command line per fold
    args.handler(args)


if __name__ == "__main__":
    run_cli(main)
