"""Tagging many files, side by side, in one run: panns_inference's AudioTagging (file by file,
and batched 8 at a time, as its README shows) against this project's inference over the same
files with the same official-format Cnn14 weights: the PyTorch path, the ONNX fp32 path and
the ONNX int8 path (all through pytorch/file_stream.py, as `main.py inference` runs).

    pip install panns-inference     # the peer, measured here (not a dependency of the project)
    python3 scripts/benchmark_inference.py [--checkpoint=Cnn14_mAP=0.431.pth] [--files=40]
        [--long_seconds=240] [--batch_size=8] [--num_workers=1] [--output_json=X.json]

--checkpoint: an official-format Cnn14, as published or as `main.py export --output=X.pth`
writes a fine-tuned Transfer_Cnn14 (its labels as the first rows of fc_audioset; the rows up to
AudioSet's 527, which panns_inference builds, are added so that they never win, and its logits
are shifted below saturation: audioset_sized). Without it the weights are random Cnn14 weights
in the official layout: the same arithmetic, so the same speed, but near-uniform outputs, so
the top-1 agreement of the int8 model (whose rounding reorders near-ties) means nothing there.
The files are demo-set music of 10 s (and one long recording), written once to a temporary
folder; the int8 model is calibrated on 64 other demo clips. Each contender runs in its own
process, after a warm-up file: clips/s of the tagging loop, the process's peak RSS, and top-1
agreement with panns_inference on every file (and, where a label differs, how near a tie
panns_inference's own top two were there). Before anything is timed, panns_inference's
label CSV is put in ~/panns_data from metadata/ so that it fetches nothing.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np

from utils.arguments import Parser, non_negative_int, positive_float, positive_int
from utils.config import AUDIOSET_LABELS_CSV, REPO_DIR, SAMPLE_RATE, AudioConfig
from utils.utilities import UsageError, atomic_write_text, file_sha256, run_cli

CONTENDERS = ("panns_inference", "panns_inference_batched", "project_torch", "project_onnx",
              "project_int8")
SCALING = "project_scaling"  # the project's stream over N short files: peak RSS against N
AUDIOSET_CLASSES = 527
CALIBRATION_FILES = 64  # the int8 model's calibration (as the export's): demo clips of another seed


def demo_clip(genre, index, seed=7):
    from scripts.demo.mixing import synthesize_clip
    from utils.config import GTZAN_LABELS

    return synthesize_clip(GTZAN_LABELS[genre], index, 10.0, SAMPLE_RATE, seed=seed)


def write_clips(folder, count, seed=7, name="clip"):
    """`count` demo clips of 10 s, the genres in turn."""
    import soundfile

    paths = []
    for index in range(count):
        paths.append(os.path.join(folder, f"{name}{index:04d}.wav"))
        soundfile.write(paths[-1], demo_clip(index % 10, index // 10, seed), SAMPLE_RATE,
                        subtype="PCM_16")
    return paths


def write_files(folder, files, long_seconds):
    """`files` demo clips of 10 s and one long recording (demo clips one after another)."""
    import soundfile

    paths = write_clips(folder, files)
    pieces = [demo_clip(index % 10, 100 + index)
              for index in range(int(np.ceil(long_seconds / 10)))]
    long_path = os.path.join(folder, "long.wav")
    soundfile.write(long_path, np.concatenate(pieces)[:int(long_seconds * SAMPLE_RATE)],
                    SAMPLE_RATE, subtype="PCM_16")
    return paths, long_path


def cnn14(classes_num=AUDIOSET_CLASSES):
    """Cnn14 with the published front end (AudioConfig's defaults); any number of rows."""
    from pytorch.models import Cnn14

    return Cnn14(**AudioConfig().front_end(), classes_num=classes_num)


def random_cnn14(path):
    import torch

    torch.manual_seed(0)
    torch.save({"model": cnn14().state_dict()}, path)


def audioset_sized(checkpoint, path, calibration_paths):
    """`checkpoint` (official layout) written to `path` with fc_audioset grown to AudioSet's
    527 rows where it has fewer (a fine-tuned backbone's labels): zero weights, bias -1e4.
    Its own rows' biases are then lowered alike by the largest logit on the calibration clips
    (returned): a head trained with softmax gives logits up to ~60, whose sigmoids are all 1.0
    in float32, so that a clip's top label would be a tie; a common shift changes no clip's
    top label, and below 0 float32 tells the sigmoids apart."""
    import soundfile
    import torch
    from pytorch.checkpoints import load_checkpoint_file

    state = load_checkpoint_file(checkpoint, "--checkpoint")["model"]
    weight, bias = state["fc_audioset.weight"], state["fc_audioset.bias"]
    missing, shift = AUDIOSET_CLASSES - weight.shape[0], 0.0
    if missing > 0:
        model = cnn14(weight.shape[0]).eval()
        model.load_state_dict(state)
        waveforms = torch.from_numpy(np.stack([soundfile.read(p, dtype="float32")[0]
                                               for p in calibration_paths]))
        with torch.no_grad():
            embedding = torch.cat([model(batch)["embedding"] for batch in waveforms.split(8)])
        shift = float((embedding @ weight.T + bias).max())
        padding = weight.new_zeros(missing, weight.shape[1])
        state["fc_audioset.weight"] = torch.cat([weight, padding])
        state["fc_audioset.bias"] = torch.cat([bias - shift, bias.new_full((missing,), -1e4)])
    torch.save({"model": state}, path)
    return shift


def peer_labels_in_place():
    """panns_inference reads ~/panns_data/class_labels_indices.csv, and fetches it if absent
    (a failed fetch leaves an empty file there, which it then reads as zero labels)."""
    target = os.path.join(os.path.expanduser("~"), "panns_data", "class_labels_indices.csv")
    with open(AUDIOSET_LABELS_CSV, encoding="utf-8") as f:
        wanted = f.read()
    present = open(target, encoding="utf-8").read() if os.path.isfile(target) else None
    if present != wanted:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy(AUDIOSET_LABELS_CSV, target)


def run_peer(checkpoint, paths, batch):
    """panns_inference's AudioTagging as its README uses it: librosa.load, then inference."""
    import librosa
    from panns_inference import AudioTagging

    tagger = AudioTagging(checkpoint_path=checkpoint, device="cpu")
    tagger.inference(librosa.load(paths[0], sr=SAMPLE_RATE, mono=True)[0][None])  # warm-up
    started, probabilities = time.perf_counter(), []
    for start in range(0, len(paths), batch):
        audio = [librosa.load(path, sr=SAMPLE_RATE, mono=True)[0] for path in paths[start:start + batch]]
        probabilities.append(tagger.inference(np.stack(audio))[0])
    seconds, probabilities = time.perf_counter() - started, np.concatenate(probabilities)
    return seconds, probabilities.argmax(axis=1).tolist(), top_two_gaps(probabilities)


def top_two_gaps(probabilities):
    """Per clip, how far its top label's logit is above the second's: how near a tie the
    label it is given is (a gap of 0.01 is a 1% ratio of the two labels' odds)."""
    p = np.clip(probabilities.astype(np.float64), 1e-300, 1 - 1e-16)
    top_two = np.sort(np.log(p) - np.log1p(-p), axis=1)[:, -2:]
    return (top_two[:, 1] - top_two[:, 0]).tolist()


def run_project(path, paths, batch_size, num_workers, runtime):
    from pytorch.file_stream import stream_predictions
    from pytorch.predictor import load_predictor
    from pytorch.windows import WHOLE_FILE_SECONDS

    predictor = load_predictor(path, runtime=runtime)
    list(stream_predictions(predictor, paths[:1], verbose=False, num_workers=0))  # warm-up
    started = time.perf_counter()
    top = [int(np.argmax(result["probabilities"])) for result in stream_predictions(
        predictor, paths, top_k=1, batch_size=batch_size, whole_file_seconds=WHOLE_FILE_SECONDS,
        num_workers=num_workers, verbose=False)]  # each result dropped once its label is kept
    return time.perf_counter() - started, top


def contender(args):
    """In a child process: one contender over the files; prints a JSON line."""
    name, model, paths, batch_size, num_workers = (args.run, args.model, args.paths,
                                                   args.batch_size, args.num_workers)
    if len(paths) == 1 and paths[0].endswith(".txt"):
        from pytorch.inference import listed_paths
        paths = listed_paths(paths[0])
    gaps = None
    if name.startswith("panns_inference"):
        seconds, top, gaps = run_peer(model, paths, 8 if name.endswith("batched") else 1)
    else:
        seconds, top = run_project(model, paths, batch_size, num_workers, "torch"
                                   if name in ("project_torch", SCALING) else "onnx")
    print(json.dumps({"seconds": seconds, "top": top, "gaps": gaps,
                      "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb():
    """This process's peak resident memory (VmHWM: unlike getrusage's ru_maxrss, it starts
    afresh at exec, so a child does not report its parent's peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def in_child(name, model, paths, args):
    command = [sys.executable, os.path.abspath(__file__), f"--run={name}", f"--model={model}",
               f"--batch_size={args.batch_size}", f"--num_workers={args.num_workers}",
               "--paths", *paths]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_DIR)
    if result.returncode != 0:
        raise UsageError(f"{name} failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def prepare_models(folder, checkpoint, paths):
    """(official-format .pth, its fp32 .onnx, its int8 .onnx, the logit shift of
    audioset_sized): the exports beside the checkpoint copy, the int8 one calibrated on the
    clips at `paths` (static, front end and head in fp32)."""
    from pytorch.onnx_export import export_onnx
    from pytorch.quantize import quantized

    pth, shift = os.path.join(folder, "Cnn14.pth"), 0.0
    if checkpoint:
        shift = audioset_sized(checkpoint, pth, paths)
    else:
        random_cnn14(pth)
    onnx_path = os.path.join(folder, "Cnn14.onnx")
    export_onnx(pth, onnx_path)

    class Clips:  # the quantizer's calibration reader wants dataset[i]["waveform"]
        def __getitem__(self, index):
            import soundfile
            return {"waveform": soundfile.read(paths[index], dtype="float32")[0]}

    int8_folder = os.path.join(folder, "int8")
    os.makedirs(int8_folder)
    int8 = quantized(onnx_path, "static", Clips(), np.arange(len(paths)), int8_folder)
    return pth, onnx_path, int8, shift


def compare(args):
    import onnxruntime  # noqa: F401 (fail early when absent)
    try:
        import panns_inference  # noqa: F401
    except ImportError:
        raise UsageError("pip install panns-inference: the peer this benchmark measures") from None
    peer_labels_in_place()
    with tempfile.TemporaryDirectory() as folder:
        paths, long_path = write_files(folder, args.files, args.long_seconds)
        calibration = write_clips(folder, CALIBRATION_FILES, seed=8, name="calibration")
        pth, onnx_path, int8, shift = prepare_models(folder, args.checkpoint, calibration)
        models = {"panns_inference": pth, "panns_inference_batched": pth, "project_torch": pth,
                  "project_onnx": pth, "project_int8": int8}
        report = {"files": args.files, "file_seconds": 10.0, "long_seconds": args.long_seconds,
                  "weights": args.checkpoint or "random Cnn14 (official layout)",
                  "weights_sha256": args.checkpoint and file_sha256(args.checkpoint),
                  "logit_shift": shift, "calibration_files": CALIBRATION_FILES,
                  "batch_size": args.batch_size, "num_workers": args.num_workers,
                  "cpus": os.cpu_count(), "contenders": {}}
        for name in CONTENDERS:
            folder_run = in_child(name, models[name], paths, args)
            long_run = (in_child(name, models[name], [long_path], args)
                        if name.startswith("project") else None)
            report["contenders"][name] = {
                "clips_per_s": args.files / folder_run["seconds"],
                "peak_rss_mb": folder_run["peak_rss_mb"], "top": folder_run["top"],
                "gaps": folder_run["gaps"],
                "long_seconds_per_s": long_run and args.long_seconds / long_run["seconds"]}
            print(f"{name}: {report['contenders'][name]['clips_per_s']:.2f} clips/s", flush=True)
    return summarize(report)


def memory_scaling(counts, args):
    """Peak RSS of the project's stream over N copies (hard links) of a 1-s clip, per N: a
    random Transfer_MobileNetV2 on 1-s clips, so that 10,000 files take a minute."""
    import soundfile
    import torch
    from pytorch.models import create_model
    from utils.config import RunConfig

    peaks = {}
    with tempfile.TemporaryDirectory() as folder:
        audio = AudioConfig(clip_samples=SAMPLE_RATE)
        torch.manual_seed(0)
        model = create_model("Transfer_MobileNetV2", **audio.front_end(), classes_num=10,
                             task="single_label")
        run = RunConfig(model_type="Transfer_MobileNetV2", task="single_label",
                        labels=[f"l{i}" for i in range(10)], audio=audio, features="",
                        holdout_fold=1, loss_type="clip_nll")
        checkpoint = os.path.join(folder, "small.pth")
        torch.save({"iteration": 0, "model": model.state_dict(), "config": run.to_dict()},
                   checkpoint)
        clip = os.path.join(folder, "clip.wav")
        soundfile.write(clip, 0.1 * np.random.default_rng(0).standard_normal(SAMPLE_RATE),
                        SAMPLE_RATE, subtype="PCM_16")
        for count in counts:
            files = os.path.join(folder, f"files{count}")
            os.makedirs(files)
            for index in range(count):
                os.link(clip, os.path.join(files, f"{index:05d}.wav"))
            listing = os.path.join(folder, f"files{count}.txt")
            with open(listing, "w") as f:
                f.write("".join(f"{files}/{index:05d}.wav\n" for index in range(count)))
            result = in_child(SCALING, checkpoint, [listing], args)
            peaks[count] = {"peak_rss_mb": result["peak_rss_mb"],
                            "files_per_s": count / result["seconds"]}
            print(f"{count} files: peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)
    return peaks


def summarize(report):
    contenders = report["contenders"]
    peer = contenders["panns_inference"]
    peer_top = np.asarray(peer["top"])
    for name, result in contenders.items():
        result["vs_panns_inference"] = result["clips_per_s"] / peer["clips_per_s"]
        result["vs_panns_inference_batched"] = (result["clips_per_s"]
                                                / contenders["panns_inference_batched"]["clips_per_s"])
    # With random weights every file may get the same top label by a hair (one class for all
    # 40 files, margin 6e-4 in probability): agreement then only says whether int8's rounding
    # keeps that hair. The count of distinct top labels says which case a run is.
    report["distinct_top1_labels_of_panns_inference"] = len(set(peer["top"]))
    # Where a contender's top label differs, how near a tie panns_inference's own was there.
    gaps = np.asarray(peer["gaps"])
    report["top_two_gap_percentiles_of_panns_inference"] = {
        q: float(np.percentile(gaps, q)) for q in (1, 2, 5, 50)}
    for result in contenders.values():
        differs = np.asarray(result.pop("top")) != peer_top
        result.pop("gaps")
        result["top1_agreement_with_panns_inference"] = float(np.mean(~differs))
        result["peer_top_two_gaps_where_top1_differs"] = sorted(gaps[differs].tolist())
    report["int8_vs_onnx"] = (contenders["project_int8"]["clips_per_s"]
                              / contenders["project_onnx"]["clips_per_s"])
    return report


def main():
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help="an official-format Cnn14 .pth")
    parser.add_argument("--files", type=non_negative_int, default=40,
                        help="10-s files each contender tags (0: only the memory scaling)")
    parser.add_argument("--long_seconds", type=positive_float, default=240.0)
    parser.add_argument("--batch_size", type=positive_int, default=8)
    parser.add_argument("--num_workers", type=non_negative_int, default=1)
    parser.add_argument("--output_json", default=None)
    parser.add_argument("--scaling_files", default="100,10000",
                        help="peak memory of the project's stream over this many short files "
                             "(comma-separated counts; empty: skip)")
    parser.add_argument("--run", choices=CONTENDERS + (SCALING,),
                        help="(internal) one contender, in a child")
    parser.add_argument("--model", help="(internal)")
    parser.add_argument("--paths", nargs="+", help="(internal)")
    args = parser.parse_args()
    if args.run:
        contender(args)
        return
    report = compare(args) if args.files else {"contenders": {}}
    counts = [int(count) for count in args.scaling_files.split(",") if count.strip()]
    if counts:
        report["memory_scaling"] = memory_scaling(counts, args)
    for name, result in report["contenders"].items():
        long_part = (f", long file {result['long_seconds_per_s']:.1f} s of audio/s"
                     if result["long_seconds_per_s"] else "")
        differing = result["peer_top_two_gaps_where_top1_differs"]
        ties_part = (f" (differs where panns_inference's top two logits are within "
                     f"{max(differing):.3g})" if differing else "")
        print(f"{name:26s} {result['clips_per_s']:6.2f} clips/s  x{result['vs_panns_inference']:.2f}"
              f" vs panns_inference  peak RSS {result['peak_rss_mb']:.0f} MB  top-1 agreement "
              f"{result['top1_agreement_with_panns_inference']:.3f}{long_part}{ties_part}")
    if args.files:
        print(f"int8 ONNX vs fp32 ONNX: x{report['int8_vs_onnx']:.2f}; panns_inference's top "
              f"labels: {report['distinct_top1_labels_of_panns_inference']} distinct over "
              f"{args.files} files")
    if args.output_json:
        atomic_write_text(json.dumps(report, indent=2) + "\n", args.output_json)


if __name__ == "__main__":
    run_cli(main)
