"""Fine-tune PANNs on a packed HDF5 (GTZAN genres, IAB labels, or your own audio).

    python3 pytorch/main.py train --workspace=WS --holdout_fold=1 --model_type=Transfer_Cnn14 \\
        --pretrained_checkpoint_path=Cnn14_mAP=0.431.pth --loss_type=clip_nll \\
        --augmentation=mixup --learning_rate=1e-4 --batch_size=32 --stop_iteration=2000 --cuda
"""
import argparse
import os
import shlex
import sys

if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


from pytorch.configure import train_run_config
from pytorch.cross_validation import resume_point, train_all_folds
from pytorch.embed import add_embed_parser
from pytorch.evaluate import add_evaluate_parser
from pytorch.explain import add_explain_parser
from pytorch.inference import add_inference_parser
from pytorch.onnx_export import add_export_parser
from pytorch import linear_probe, train as training
from pytorch.zero_shot import add_zero_shot_parser
from utils import config
from utils.arguments import Parser, add_config_options, add_flags, iteration_or_last
from utils.runs import checkpoint_path, default_features_path, run_dirs, saved_iterations
from utils.statistics_files import parse_filters, require_statistics
from utils.utilities import UsageError, require_file, run_cli

TRAIN_SPLITS = ("folds", "filtered", "subsets")


# The --help groups of the options declared on RunConfig and AudioConfig (utils/config.py).
OPTION_GROUPS = {
    config.FRONT_END: "front end (default: what the pretrained checkpoint holds, else Cnn14's "
                      f"{config.WINDOW_SIZE}/{config.HOP_SIZE}/{config.MEL_BINS} mels/"
                      f"{config.FMIN}-{config.FMAX} Hz; the sample rate comes from the HDF5)",
    config.SELECTION: "data and model selection",
    config.FINE_TUNING: "fine-tuning options (pytorch/optimization.py; default: the recipe's "
                        "constant-rate Adam)",
    config.SPEED: "speed (default: all on with --cuda on a GPU)",
}


def add_train_parser(subparsers):
    parser = subparsers.add_parser("train", help="train one holdout fold, all ten, or a split")
    parser.add_argument("--dataset_dir", default=None, help="accepted for the original recipe; unused")
    add_flags(parser, "workspace", "features", "holdout_fold", "split", "model_type",
              "pretrained_checkpoint_path", "trust_checkpoint", required=("workspace",))
    parser.add_argument("--mini_data", action="store_true",
                        help="read WS/features/minidata_waveform.h5")
    parser.add_argument("--resume_iteration", type=iteration_or_last, default=0,
                        help="continue from this iteration's checkpoint; last: from this run's "
                             "last checkpoint, or from scratch when it has none (a finished "
                             "run is left as it is)")
    add_config_options(parser, config.RunConfig, OPTION_GROUPS)
    add_config_options(parser, config.AudioConfig, OPTION_GROUPS)
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
    trainer = linear_probe.train_probe if run.linear_probe else training.train
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
    if args.tensorboard:
        print(tensorboard_command([run for run, _ in rows]))
        return
    for run, newest in rows:
        described = " ".join(f"{key}={value}" for key, value in run.info.items())
        print(f"{described}\n    statistics {run.path}\n    last checkpoint {newest or '-'}")


def tensorboard_command(runs):
    """`tensorboard --logdir_spec=NAME:FOLDER,...` naming each run by what sets it apart from
    the others listed (e.g. `holdout_fold=3`), not by its 200-character folder path."""
    differing = [key for key in dict.fromkeys(key for run in runs for key in run.info)
                 if len({str(run.info.get(key)) for run in runs}) > 1]
    names = []
    for run in runs:
        name = " ".join(f"{key}={run.info.get(key)}" for key in differing) or \
            str(run.info.get("model_type", "run"))
        names.append(name.replace(",", ";").replace(":", "-"))  # the spec's separators
    spec = ",".join(f"{name}:{os.path.dirname(run.path)}" for name, run in zip(names, runs))
    return f"tensorboard --logdir_spec={shlex.quote(spec)}"


def add_runs_parser(subparsers):
    parser = subparsers.add_parser("runs", help="list a workspace's runs (from their run.json)")
    add_flags(parser, "workspace", "holdout_fold", "model_type", "filter", required=("workspace",))
    parser.add_argument("--latest_checkpoint", action="store_true",
                        help="print only the newest last checkpoint of the matching runs")
    parser.add_argument("--tensorboard", action="store_true",
                        help="print the TensorBoard command that shows the matching runs under "
                             "short names (what sets each apart), not their folder paths")
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
    add_explain_parser(subparsers)
    add_runs_parser(subparsers)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # --holdout_fold=all re-runs the user's own command line per fold
    args.handler(args)


def cli():
    """The `panns-transfer` command (pyproject.toml): this command line, installed."""
    run_cli(main)


if __name__ == "__main__":
    cli()
