#!/usr/bin/env python3
"""Fine-tuning options side by side over ten folds: the table of docs/fine_tuning.md.

    python3 scripts/compare_fine_tuning.py --workspace=WS --features=WS/features/waveform.h5 \\
        --backbone=metadata/pretrained/MobileNetV2_sounds.pth --learning_rates=1e-3,3e-4 \\
        --stop_iteration=40 [--options=scratch,full,...] [--extra_flags='--no_spec_augment']
        [--output=docs/transfer_demo.json]

Each option (OPTIONS below) at each learning rate is one `main.py train --holdout_fold=all`
run, told apart by --run_name; a rerun continues where it stopped (finished folds are left as
they are). Then, per row: mean +- sample std over the folds of the best and the final
validation accuracy, and how many folds' final accuracy is above / below full fine-tuning's at
the same learning rate. Writes the rows as JSON and prints them as a Markdown table.
"""
import os
import subprocess
import sys
import time

if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np

from utils.arguments import Parser, positive_int
from utils.cv_summary import summarize_folds
from utils.utilities import UsageError, run_cli, write_json

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = "full"
# name -> (flags, whether it starts from the backbone, whether it takes the row's learning rate)
OPTIONS = {
    "scratch": ([], False, True),
    "full": ([], True, True),
    "freeze_base": (["--freeze_base"], True, True),
    "linear_probe": (["--linear_probe"], True, True),
    "layer_decay": (["--layer_decay=0.75"], True, True),
    "cosine": (["--lr_schedule=cosine", "--warmup_iterations=5"], True, True),
    "adamw": (["--optimizer=adamw", "--weight_decay=0.05"], True, True),
    "mixup": (["--augmentation=mixup"], True, True),
    "head_init": (["--head_init=probe"], True, True),
}


def run_name(args, option, learning_rate):
    """One folder per option, rate and budget: a second budget in the same workspace is a new
    run, not a resumed one."""
    return f"{option}_lr{learning_rate}_{args.stop_iteration}it"


def train_option(args, option, learning_rate):
    """One option at one learning rate over all folds (a subprocess: its own memory)."""
    flags, pretrained, _ = OPTIONS[option]
    command = [sys.executable, os.path.join(REPO_DIR, "pytorch", "main.py"), "train",
               f"--workspace={args.workspace}", f"--features={args.features}",
               "--holdout_fold=all", f"--model_type={args.model_type}", "--loss_type=clip_nll",
               f"--learning_rate={learning_rate}", f"--batch_size={args.batch_size}",
               f"--stop_iteration={args.stop_iteration}", f"--eval_every={args.eval_every}",
               f"--save_every={args.stop_iteration}", "--num_workers=1", "--precision=fp32",
               f"--seed={args.seed}", f"--run_name={run_name(args, option, learning_rate)}",
               "--resume_iteration=last"]
    if "--augmentation=mixup" not in flags:
        command.append("--augmentation=none")
    if pretrained:
        command.append(f"--pretrained_checkpoint_path={args.backbone}")
    command += args.extra_flags.split()
    started = time.time()
    subprocess.run(command + flags, check=True, stdout=subprocess.DEVNULL)
    return time.time() - started


def fold_finals(rows):
    return {row["fold"]: row["final_accuracy"] for row in rows if str(row["fold"]).isdigit()}


def summary_row(args, option, learning_rate, seconds):
    rows = summarize_folds(args.workspace,
                           filters={"run_name": run_name(args, option, learning_rate)})
    mean = next(row for row in rows if row["fold"] == "mean")
    std = next(row for row in rows if row["fold"] == "std")
    return {"option": option, "learning_rate": learning_rate,
            "flags": " ".join(OPTIONS[option][0]) or "-",
            "from_backbone": OPTIONS[option][1],
            "best_accuracy": [mean["best_accuracy"], std["best_accuracy"]],
            "final_accuracy": [mean["final_accuracy"], std["final_accuracy"]],
            "folds": len(fold_finals(rows)), "final_per_fold": fold_finals(rows),
            "seconds": seconds}


def against_reference(rows):
    """Each row's folds whose final accuracy is above / below full fine-tuning's."""
    reference = {row["learning_rate"]: row["final_per_fold"] for row in rows
                 if row["option"] == REFERENCE}
    for row in rows:
        other = reference.get(row["learning_rate"])
        if other is None or row["option"] == REFERENCE:
            row["vs_full"] = None
            continue
        differences = np.array([row["final_per_fold"][fold] - other[fold]
                                for fold in row["final_per_fold"] if fold in other])
        row["vs_full"] = [int((differences > 1e-9).sum()), int((differences < -1e-9).sum())]
    return rows


def markdown(rows):
    lines = ["| option | lr | flags | best accuracy | final accuracy | final vs full: folds "
             "better / worse | minutes (10 folds) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        versus = "-" if row["vs_full"] is None else f"{row['vs_full'][0]} / {row['vs_full'][1]}"
        lines.append(f"| {row['option']} | {row['learning_rate']} | `{row['flags']}` | "
                     f"{row['best_accuracy'][0]:.3f} ± {row['best_accuracy'][1]:.3f} | "
                     f"{row['final_accuracy'][0]:.3f} ± {row['final_accuracy'][1]:.3f} | "
                     f"{versus} | {row['seconds'] / 60:.1f} |")
    return "\n".join(lines)


def main():
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--features", required=True)
    parser.add_argument("--backbone", required=True, help="the pretrained checkpoint")
    parser.add_argument("--model_type", default="Transfer_MobileNetV2")
    parser.add_argument("--learning_rates", default="1e-3,3e-4")
    parser.add_argument("--options", default=",".join(OPTIONS))
    parser.add_argument("--batch_size", type=positive_int, default=16)
    parser.add_argument("--stop_iteration", type=positive_int, default=40)
    parser.add_argument("--eval_every", type=positive_int, default=10)
    parser.add_argument("--seed", type=positive_int, default=1234)
    parser.add_argument("--extra_flags", default="",
                        help="flags every run gets, e.g. '--no_spec_augment'")
    parser.add_argument("--output", default=None, help="the rows as JSON")
    args = parser.parse_args()
    options = args.options.split(",")
    unknown = [option for option in options if option not in OPTIONS]
    if unknown:
        raise UsageError(f"--options: unknown {', '.join(unknown)}; choose from {', '.join(OPTIONS)}")
    rows = []
    for learning_rate in args.learning_rates.split(","):
        for option in options:
            seconds = train_option(args, option, learning_rate)
            rows.append(summary_row(args, option, learning_rate, seconds))
            print(f"{option} lr {learning_rate}: final accuracy {rows[-1]['final_accuracy'][0]:.3f} "
                  f"({seconds:.0f} s)", flush=True)
    rows = against_reference(rows)
    if args.output:
        write_json({"command": " ".join(sys.argv), "rows": rows}, args.output)
    print(markdown(rows))


if __name__ == "__main__":
    run_cli(main)
