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


from pytorch.configure import train_run_config
from pytorch.cross_validation import resume_point, train_all_folds
from pytorch.embed import add_embed_parser
from pytorch.evaluate import add_evaluate_parser
from pytorch.inference import add_inference_parser
from pytorch.onnx_export import add_export_parser
from pytorch.optimization import OPTIMIZERS, SCHEDULES
from pytorch.linear_probe import train_probe
from pytorch.train import train
from pytorch.zero_shot import add_zero_shot_parser
from utils import config
from utils.arguments import (Parser, add_flags, float_range, fold_number, non_negative_int,
                             positive_int, iteration_or_last, str2bool)
from utils.runs import checkpoint_path, default_features_path, run_dirs, saved_iterations
from utils.statistics_files import parse_filters, require_statistics
from utils.utilities import UsageError, require_file, run_cli

TRAIN_SPLITS = ("folds", "filtered", "subsets")


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


def add_selection_flags(parser):
    group = parser.add_argument_group("data and model selection")
    group.add_argument("--mini_data", action="store_true",
                       help="read WS/features/minidata_waveform.h5")
    group.add_argument("--test_fold", type=fold_number, default=None,
                       help="with --split=folds: a test fold, scored once at the end (neither "
                            "trains nor selects)")
    group.add_argument("--sampler", default="shuffle", choices=["shuffle", "balanced"],
                       help="balanced: each batch draws every label (and 'no label') equally "
                            "often, for imbalanced multi-label data")
    group.add_argument("--select_by", default=None, choices=["accuracy", "mAP", "macro_f1"],
                       help="validation metric for --keep_best and early stopping (default: "
                            "accuracy, or mAP for multi-label)")
    group.add_argument("--keep_best", action="store_true",
                       help="also keep best.pth, the checkpoint with the best validation score")
    group.add_argument("--early_stop_patience", type=non_negative_int, default=0,
                       help="stop after this many evaluations without improvement (0: never)")
    group.add_argument("--in_memory", default="auto", choices=["auto", "yes", "no"],
                       help="yes: map the packed file(s) into memory (one copy per node, shared "
                            "by its ranks); no: read each clip when its batch comes, with "
                            "read-ahead; auto: map when under half the available RAM")


def add_fine_tuning_flags(parser):
    group = parser.add_argument_group(
        "fine-tuning options (pytorch/optimization.py; default: the recipe's constant-rate Adam)")
    group.add_argument("--optimizer", default="adam", choices=OPTIMIZERS,
                       help="adamw: decoupled weight decay, not on biases and norms")
    group.add_argument("--weight_decay", type=float_range(0.0, 1.0), default=0.0,
                       help="AdamW's weight decay (e.g. 0.01)")
    group.add_argument("--lr_schedule", default="constant", choices=SCHEDULES,
                       help="after --warmup_iterations, decay the rate to 0 by cosine or linearly")
    group.add_argument("--warmup_iterations", type=non_negative_int, default=0,
                       help="linear warm-up from 0 over this many iterations")
    group.add_argument("--decay_iterations", type=non_negative_int, default=0,
                       help="the iteration where the decay reaches 0 (0: --stop_iteration; set "
                            "it to extend a run later without changing its schedule)")
    group.add_argument("--layer_decay", type=float_range(0.01, 1.0), default=1.0,
                       help="layer-wise decay: each backbone block below the head trains at "
                            "this times the rate of the one above (e.g. 0.75)")
    group.add_argument("--grad_clip_norm", type=float_range(0.0, 1e6), default=0.0,
                       help="clip the gradients' global L2 norm (0: off)")


def add_speed_flags(parser):
    # Fast by default on a GPU: bf16, channels-last and torch.compile unless turned off.
    group = parser.add_argument_group("speed (default: all on with --cuda on a GPU)")
    group.add_argument("--compile", default=None, action=argparse.BooleanOptionalAction,
                       help="torch.compile the model")
    group.add_argument("--channels_last", default=None, action=argparse.BooleanOptionalAction,
                       help="channels-last convolutions")
    group.add_argument("--sync_batchnorm", action="store_true",
                       help="under torchrun on GPUs: BatchNorm statistics over the global batch "
                            "(SyncBatchNorm) instead of each GPU's share")


def add_train_parser(subparsers):
    parser = subparsers.add_parser("train", help="train one holdout fold, all ten, or a split")
    parser.add_argument("--dataset_dir", default=None, help="accepted for the original recipe; unused")
    add_flags(parser, "workspace", "features", "holdout_fold", "split", "model_type",
              "pretrained_checkpoint_path", "batch_size", "num_workers", "cuda", "precision",
              "threshold", "trust_checkpoint", required=("workspace",))
    parser.add_argument("--freeze_base", nargs="?", const=True, default=False, type=str2bool)
    parser.add_argument("--loss_type", default=None,
                        help="clip_nll (single-label) or clip_bce (multi-label); default by task")
    parser.add_argument("--augmentation", default="mixup", choices=["none", "mixup"])
    parser.add_argument("--no_spec_augment", action="store_true", help="switch SpecAugment off")
    # Above 1, Adam's step overflows float32 (and no fine-tuning wants it).
    parser.add_argument("--learning_rate", type=float_range(1e-12, 1.0), default=None,
                        help="default 1e-4 (1e-3 with --linear_probe); 1e-12 to 1")
    parser.add_argument("--linear_probe", action="store_true",
                        help="fit only a linear head on the frozen backbone's embeddings, "
                             "computed once and cached beside the HDF5 (pytorch/linear_probe.py)")
    parser.add_argument("--resume_iteration", type=iteration_or_last, default=0,
                        help="continue from this iteration's checkpoint; last: from this run's "
                             "last checkpoint, or from scratch when it has none (a finished "
                             "run is left as it is)")
    parser.add_argument("--stop_iteration", type=positive_int, default=2000)
    parser.add_argument("--eval_every", type=positive_int, default=200)
    parser.add_argument("--save_every", type=positive_int, default=2000)
    parser.add_argument("--seed", type=non_negative_int, default=1234)
    parser.add_argument("--run_name", default="",
                        help="a name that keeps this run apart from others with the same folder "
                             "flags (e.g. one per learning rate of a sweep)")
    add_selection_flags(parser)
    add_fine_tuning_flags(parser)
    add_speed_flags(parser)
    add_audio_flags(parser)
    parser.set_defaults(handler=run_train)


def train_flags(args):
    """The train command's values, checked together and resolved (the namespace itself is left
    as parsed): the split and its holdout, and the features path."""
    named = args.holdout_fold if args.holdout_fold in TRAIN_SPLITS else None
    split = args.split or named or "folds"
    if split not in TRAIN_SPLITS:
        raise UsageError(f"--split={split}: training takes {', '.join(TRAIN_SPLITS)}")
    if named and named != split:
        raise UsageError(f"--holdout_fold={named} goes with --split={named}, not --split={split}")
    if split != "folds" and args.holdout_fold not in (None, split):
        raise UsageError(f"--holdout_fold={args.holdout_fold}: --split={split} has its own "
                         "validation set; drop --holdout_fold")
    if args.test_fold is not None and split != "folds":
        raise UsageError(f"--test_fold={args.test_fold} applies to --split=folds; --split="
                         f"{split} has its own test set")
    if args.resume_iteration != "last" and args.resume_iteration > args.stop_iteration:
        raise UsageError(f"--resume_iteration={args.resume_iteration}: must be at most "
                         f"--stop_iteration={args.stop_iteration}")
    if args.run_name and (os.sep in args.run_name or args.run_name.startswith(".")):
        raise UsageError(f"--run_name={args.run_name}: use a plain name (no '/', not starting with '.')")
    if args.pretrained_checkpoint_path:
        require_file(args.pretrained_checkpoint_path, "--pretrained_checkpoint_path")
    holdout = split if split != "folds" else (args.holdout_fold or 1)
    return dict(vars(args), split=split, holdout_fold=holdout,
                features=args.features or default_features_path(args.workspace, args.mini_data))


def run_train(args):
    """Build the run's config once, then train it: the full loop or the linear probe, one fold
    or all of them."""
    run = train_run_config(train_flags(args))
    trainer = train_probe if run.linear_probe else train
    if run.holdout_fold == "all":
        train_all_folds(trainer, run, args.workspace, args.trust_checkpoint, args.argv)
        return
    resume_iteration = args.resume_iteration
    if resume_iteration == "last":  # a re-run of the same command continues where it stopped
        resume_iteration = resume_point(run, args.workspace)
        if resume_iteration is None:
            print(f"this run finished before (statistics under "
                  f"{run_dirs(args.workspace, run)['statistics']}); nothing to do: change "
                  "--stop_iteration to train further, or --run_name=NAME for another run",
                  file=sys.stderr)
            return
    trainer(run, args.workspace, resume_iteration, args.trust_checkpoint)


def run_list_runs(args):
    """List the runs of a workspace from their run.json; --latest_checkpoint prints one path."""
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
    add_flags(parser, "workspace", "holdout_fold", "model_type", "filter", required=("workspace",))
    parser.add_argument("--latest_checkpoint", action="store_true",
                        help="print only the newest last checkpoint of the matching runs")
    parser.set_defaults(handler=run_list_runs)


def build_parser():
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="mode", required=True)
    add_train_parser(subparsers)
    add_evaluate_parser(subparsers)
    add_inference_parser(subparsers)
    add_embed_parser(subparsers)
    add_export_parser(subparsers)
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
