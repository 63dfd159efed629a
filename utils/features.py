"""Pack a labelled audio collection into one training-ready HDF5 file.

    python3 utils/features.py pack_audio_files_to_hdf5 --dataset_dir=DIR --workspace=WS [--mini_data]
    python3 utils/features.py pack_audioset_to_hdf5 --segments_csv=CSV [--segments_csv=CSV2] \\
        --audio_dir=DIR --workspace=WS [--iab_labels=5|20] [--mapping=CSV] \\
        [--filename_pattern='Y{ytid}.wav'] [--keep_unlabelled]
    python3 utils/features.py pack_csv_to_hdf5 --csv=FILE [--audio_dir=DIR] --workspace=WS \\
        [--labels=5|20|NAME,NAME|FILE] [--keep_unlabelled]
    Any of them with --shard=I/N packs shard I of N into OUTPUT_shards/ (N machines in parallel);
    python3 utils/features.py shard_summary --shards=WS/features/waveform_shards

A killed pack continues where it stopped when the same command runs again.
The HDF5 holds audio_name, waveform (int16, one clip per chunk), target, fold, and records its
sample_rate, clip_samples, labels and task as attributes, so training needs no other file.
"""
import argparse
import collections
import contextlib
import errno
import logging
import multiprocessing
import os
import shutil
import sys
import time

if __name__ == "__main__":  # as a script: import from the repository root, never this folder
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import h5py
import numpy as np

from utils import config
from utils.arguments import (Parser, add_flags, float_range, int_range, non_negative_int,
                             positive_int, shard)
from utils.audio import (INT16_SCALE, AudioReadError, float32_to_int16, is_audio_file, read_clip,
                         wav_truncation)
from utils.data_generator import data_digest
from utils.folds import folds_from_mapping, multilabel_stratified_folds, read_folds_file, stratified_folds
from utils.iab_labels import LABEL_SET_SIZES, load_label_set
from utils.iab_sources import (DEFAULT_FILENAME_PATTERN, KNOWN_PATTERNS, audioset_items, cap_per_label,
                               csv_items, display_path, label_counts, label_set_name,
                               mapping_used, mini_data_subset, resolve_label_names, seed_items)
from utils.partial_pack import (NOTED, SKIPPED, KEPT, PartialPack, job_digest, shard_of,
                                shard_path, shard_summary)
from utils.runs import default_features_path
from utils.utilities import (UsageError, allocated_bytes, atomic_write_text, write_json, check_free_space,
                             check_output_file, create_folder, create_logging,
                             progress, remove_stale_temporaries, require_file, run_cli)

MINI_DATA_CLIPS_PER_CLASS = 10
SILENT = "packed, but its clip is all silence (is it the right file?)"


def report_path_for(hdf5_path):
    return os.path.splitext(hdf5_path)[0] + "_report.tsv"


def scan_class_folders(dataset_dir, clips_per_class=None):
    """GTZAN layout: one subfolder per class. Returns (labels, [(audio_name, path, class_index)])."""
    if not os.path.isdir(dataset_dir):
        raise UsageError(f"--dataset_dir={dataset_dir}: folder not found")
    labels = sorted(name for name in os.listdir(dataset_dir)
                    if os.path.isdir(os.path.join(dataset_dir, name)) and not name.startswith("."))
    if not labels:
        raise UsageError(f"--dataset_dir={dataset_dir}: no class subfolders "
                         "(expected one folder per class, e.g. blues/ classical/ ...)")
    items = []
    for class_index, label in enumerate(labels):
        class_dir = os.path.join(dataset_dir, label)
        names = sorted(name for name in os.listdir(class_dir)
                       if is_audio_file(os.path.join(class_dir, name)))  # skips .DS_Store, .txt
        if not names:
            logging.warning("%s has no audio files: its class '%s' gets no clips and cannot be "
                            "learned or scored", class_dir, label)
        for name in names[:clips_per_class]:
            # The path under the dataset folder names a clip: blues/0.wav and disco/0.wav differ.
            items.append((f"{label}/{name}", os.path.join(class_dir, name), class_index))
    return labels, items


def _decode_clip(job):
    """Worker: decode one file to an int16 clip, or say why it can't be used."""
    index, path, sample_rate, clip_samples = job
    try:
        clip = read_clip(path, sample_rate, clip_samples)
    except AudioReadError as error:  # any decoder failure skips the file, never the whole run
        return index, None, str(error)
    clip = float32_to_int16(clip)
    truncated = wav_truncation(path)
    note = f"packed, but {truncated}" if truncated else None if clip.any() else SILENT
    return index, clip, note


def _decoded_clips(jobs, num_workers):
    """Decode in parallel, in order; at most a few clips are in flight, so memory stays bounded."""
    if num_workers <= 1:
        yield from map(_decode_clip, jobs)
        return
    # spawn, not fork: a fork copies locks that threads of this process (tqdm's monitor,
    # logging) may hold at that moment, and a worker would wait on them forever. Not forkserver
    # either: its workers hand results back ~10x slower here (100 clips of 10 s: 2-4.6 s
    # against 0.2 s from spawned ones), which made two workers slower than one.
    with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
        yield from pool.imap(_decode_clip, jobs, chunksize=2)


def assign_folds(task, targets, audio_names, folds_from=None, folds_num=config.FOLDS_NUM, seed=1234):
    if folds_from:
        return folds_from_mapping(audio_names, read_folds_file(folds_from), folds_from, folds_num)
    if task == config.SINGLE_LABEL:
        return stratified_folds(np.argmax(targets, axis=1), folds_num, seed)
    return multilabel_stratified_folds(targets, folds_num, seed)


def select_shard(shard, items, folds, targets, subset_of, output_path, attributes):
    """Shard (I, N) of the list: its items, folds, targets and file; `attributes` gain what
    ties the shard to its list (utils/partial_pack.py)."""
    index, total = shard
    whole_list = {"audio_names": [name for name, _, _ in items], "folds": folds,
                  "targets": targets, "subsets": [subset_of[path] for _, path, _ in items]
                  if subset_of else None}
    chosen = [position for position, (name, _, _) in enumerate(items)
              if shard_of(name, total) == index]
    attributes.update(shard=f"{index}/{total}", list_digest=data_digest(whole_list),
                      list_clips=len(items), shard_items=len(chosen))
    logging.info("shard %d/%d: %d of the list's %d clips", index, total, len(chosen), len(items))
    return ([items[p] for p in chosen], folds[chosen], targets[chosen],
            shard_path(output_path, index, total))


def write_clip_metadata(hf, audio_names, targets, folds, labels, task, sample_rate,
                        clip_duration, extra_attributes=None, subsets=None):
    """Everything of a packed file but its waveforms: names, targets, folds and the attributes
    that training reads its configuration from. The waveform rows are cut to the clips named
    (a partial pack allocated one per item); metadata of a finish that was killed is replaced."""
    hf["waveform"].resize((len(audio_names), hf["waveform"].shape[1]))
    for name in ("audio_name", "target", "fold", "subset"):
        if name in hf:
            del hf[name]
    hf.attrs.pop("job", None)
    if subsets is not None:
        hf.create_dataset("subset", data=list(subsets), dtype=h5py.string_dtype())
    hf.create_dataset("audio_name", data=list(audio_names), dtype=h5py.string_dtype())
    hf.create_dataset("target", data=np.asarray(targets, dtype=np.float32))
    hf.create_dataset("fold", data=np.asarray(folds).astype(np.int32))
    hf.attrs.update({
        "sample_rate": sample_rate, "clip_samples": hf["waveform"].shape[1],
        "clip_duration": clip_duration, "labels": list(labels), "task": task,
        "folds_num": config.FOLDS_NUM,
        "int16_scaling": f"clipped to [-1, 1] x {INT16_SCALE:g}", **(extra_attributes or {})})


PackResult = collections.namedtuple("PackResult", "path items kept skipped")


def pack_to_hdf5(items, labels, task, output_path, sample_rate=config.SAMPLE_RATE,
                 clip_duration=config.GTZAN_CLIP_DURATION, num_workers=1, folds_from=None,
                 seed=1234, extra_attributes=None, excluded=(), subset_of=None, shard=None):
    """Decode `items` [(audio_name, path, target vector)] into `output_path`.

    The folds are dealt over all `items` before anything is decoded, so they do not depend on
    which files decode or which machine packs them. With `shard` (I, N) only the clips of shard
    I (utils/partial_pack.shard_of) are packed, into shard_path(output_path, I, N): N machines
    pack one list in parallel, and the N files read together are the one-file pack's clips,
    folds and targets. `subset_of` {path: 'train' | 'valid' | 'test'} also writes each clip's
    subset (a dataset 'subset', for --split=subsets).

    Unusable files are skipped and listed in a report beside the HDF5, after `excluded`
    [(path, reason)]: what the caller left out before packing (missing audio, no label, ...).
    The file is written under a hidden name and renamed only when complete; a killed or failed
    pack is continued by the same call (utils/partial_pack.py).
    """
    if task not in config.TASKS:
        raise ValueError(f"task must be one of {config.TASKS}")
    clip_samples = int(round(sample_rate * clip_duration))
    classes_num = len(labels)
    targets = np.asarray([target for _, _, target in items], dtype=np.float32).reshape(
        len(items), classes_num)
    folds = assign_folds(task, targets, [name for name, _, _ in items], folds_from, seed=seed)
    attributes = dict(extra_attributes or {})
    if shard:
        items, folds, targets, output_path = select_shard(
            shard, items, folds, targets, subset_of, output_path, attributes)
    # Before decoding anything: the disk can hold the output.
    folder = create_folder(os.path.dirname(os.path.abspath(output_path)))
    remove_stale_temporaries([folder], prefix=f".{os.path.basename(output_path)}.")
    # What a pack stopped earlier (a full disk, a kill) already wrote needs no new space.
    held = allocated_bytes(os.path.join(folder, f".{os.path.basename(output_path)}.partial"))
    check_free_space(folder, max(0, int(1.05 * len(items) * clip_samples * 2) - held) + 2**20,
                     "the HDF5")
    job = job_digest(items, folds, dict(attributes, sample_rate=sample_rate,
                                        clip_samples=clip_samples, task=task, labels=labels))
    partial = PartialPack(output_path, job, len(items), clip_samples)
    done = partial.open()
    decoded = DecodedClips(items, partial, done)
    jobs = [(index, path, sample_rate, clip_samples)
            for index, (_, path, _) in enumerate(items)][len(done):]
    started = time.time()
    try:
        decoded.write_into(_decoded_clips(jobs, num_workers))
        if items and not decoded.kept:
            partial.discard()
            failed_report = _write_report(output_path, list(excluded) + decoded.skipped,
                                          failed=True)
            raise UsageError(f"no usable audio among {len(items)} files; see {failed_report}")
        kept = decoded.kept
        write_clip_metadata(partial.hf, [items[index][0] for index in kept], targets[kept],
                            folds[kept], labels, task, sample_rate, clip_duration, attributes,
                            [subset_of[items[index][1]] for index in kept] if subset_of else None)
        partial.finish()
    except OSError as error:
        report = _write_report_if_possible(output_path, list(excluded) + decoded.skipped)
        if decoded.out_of_space:  # stopped while HDF5 could still close the file: keep it
            partial.close()
            raise OSError(error.errno, f"No space left on device while packing: {len(decoded.kept)}"
                          f" clips are kept in {partial.path}; free space and run the same "
                          f"command again to continue (report: {report})", output_path) from None
        abandon_hdf5(partial.hf, partial.path)
        partial.discard()
        reason = os.strerror(error.errno) if error.errno else "write failed"
        raise OSError(error.errno, f"{reason} while packing (nothing was kept; report: "
                      f"{report})", output_path) from None
    except BaseException:  # interrupted: keep what is packed for the rerun
        if partial.hf is not None:
            partial.close()
            logging.warning("stopped: %d clips are kept in %s; run the same command again to "
                            "continue", len(decoded.kept), partial.path)
        raise
    _write_report(output_path, list(excluded) + decoded.skipped + decoded.noted)
    logging.info("packed %d clips (%d skipped) in %.1f s into %s",
                 len(decoded.kept), len(decoded.skipped), time.time() - started, output_path)
    return PackResult(output_path, items, decoded.kept, decoded.skipped)


# Free space kept for HDF5 to write its metadata when the file is closed.
HDF5_CLOSE_RESERVE = 8 * 2**20


class DecodedClips:
    """The clips decoding gives, written in order into the partial pack: which items were kept,
    skipped or noted (those of an earlier, interrupted run of the pack first)."""

    def __init__(self, items, partial, done=()):
        self.items, self.partial = items, partial
        self.kept, self.skipped, self.noted = [], [], []
        self.out_of_space = False
        for position, (status, reason) in enumerate(done):
            self._count(position, status, reason)

    def _count(self, position, status, reason):
        path = self.items[position][1]
        if status == SKIPPED:
            self.skipped.append((path, reason))
            return
        if status == NOTED:
            self.noted.append((path, reason))
        self.kept.append(position)

    def write_into(self, clips):
        """Each usable clip into the next row. Stops with ENOSPC while the disk still has room
        for HDF5 to close the file (HDF5 itself failing on a full disk leaves a file it cannot
        close, and the library then crashes the interpreter at exit)."""
        waveforms, temp_path = self.partial.waveforms, self.partial.path
        folder = os.path.dirname(os.path.abspath(temp_path))
        reserve = 2 * waveforms.shape[1] * waveforms.dtype.itemsize + HDF5_CLOSE_RESERVE
        done = len(self.kept) + len(self.skipped)
        # closing: a failed write stops the worker pool now, not when the generator is collected
        with contextlib.closing(clips):
            for index, clip, reason in progress(clips, total=len(self.items), initial=done,
                                            desc="packing", unit="clip"):
                path = self.items[index][1]
                if clip is None:
                    logging.warning("skipped %s: %s", path, reason)
                    self._count(index, SKIPPED, reason)
                    self.partial.record(index, SKIPPED, reason)
                    continue
                if reason:  # packed, but worth a look
                    logging.warning("%s: %s", path, reason)
                if shutil.disk_usage(folder).free < reserve:
                    self.out_of_space = True
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), temp_path)
                waveforms[len(self.kept)] = clip
                status = NOTED if reason else KEPT
                self._count(index, status, reason)
                self.partial.record(index, status, reason)


def abandon_hdf5(hf, temp_path):
    """Close an HDF5 file whose writes failed. HDF5 flushes its metadata on closing; on a full
    disk that fails too, and the library then crashes the interpreter at exit (a segfault).
    Giving the file's own space back first lets the close succeed; the file is discarded."""
    try:
        os.truncate(temp_path, 0)
    except OSError:
        pass
    try:
        hf.close()
    except (OSError, RuntimeError, ValueError) as error:
        logging.warning("could not close %s cleanly (%s)", temp_path, " ".join(str(error).split()))
    os.remove(temp_path)  # its room goes to the report

def _write_report_if_possible(hdf5_path, skipped):
    try:
        return _write_report(hdf5_path, skipped, failed=True)
    except OSError as error:
        return f"not written either ({error.strerror})"


def _write_report(hdf5_path, skipped, failed=False):
    """The TSV of left-out files; a failed pack writes its own, leaving the report of the HDF5
    that is still there untouched. Returns its path."""
    path = report_path_for(hdf5_path)
    if failed:
        path = path.replace("_report.tsv", "_failed_report.tsv")
    lines = ["path\treason"] + [f"{path}\t{reason}" for path, reason in skipped]
    atomic_write_text("\n".join(lines) + "\n", path)
    return path


def one_hot(class_index, classes_num):
    target = np.zeros(classes_num, dtype=np.float32)
    target[class_index] = 1.0
    return target


def pack_audio_files_to_hdf5(args):
    """GTZAN-layout folder -> single-label HDF5."""
    output_path = args.output or default_features_path(args.workspace, args.mini_data)
    clips_per_class = MINI_DATA_CLIPS_PER_CLASS if args.mini_data else None
    labels, found = scan_class_folders(args.dataset_dir, clips_per_class)
    if not found:
        raise UsageError(f"--dataset_dir={args.dataset_dir}: no audio files in the class folders")
    logging.info("%d files in %d classes: %s", len(found), len(labels), " ".join(labels))
    items = [(name, path, one_hot(class_index, len(labels))) for name, path, class_index in found]
    result = pack_to_hdf5(items, labels, config.SINGLE_LABEL, output_path, args.sample_rate,
                          args.clip_duration, args.num_workers, args.folds_from, args.seed,
                          {"source": os.path.abspath(args.dataset_dir)}, shard=args.shard)
    print(f"Wrote {result.path}")


def report_label_counts(args):
    """--dry_run: the label counts the segment CSVs give, before and after the ancestor rule,
    and with --max_clips_per_label after the cap (packing drops unlabelled clips unless
    --keep_unlabelled, so the cap's column counts those only then)."""
    labels = load_label_set(args.iab_labels)
    union, specific, unlabelled, targets = label_counts(args.segments_csv, args.iab_labels,
                                                        args.mapping)
    header = ["label", "all mids", "most specific", "changed"]
    columns = [union.tolist() + [unlabelled[0]], specific.tolist() + [unlabelled[1]]]
    columns.append([s - u for u, s in zip(*columns)])
    if args.max_clips_per_label:
        if not args.keep_unlabelled:
            targets = targets[targets.any(axis=1)]
        capped = targets[cap_per_label(targets, args.max_clips_per_label, args.seed)]
        header.append(f"cap {args.max_clips_per_label}")
        columns.append(capped.sum(axis=0).astype(int).tolist()
                       + [int((~capped.any(axis=1)).sum())])
    names = labels + ["(no label)"]
    width = max(map(len, names)) + 2
    print(f"clips per IAB label ({args.iab_labels} labels), labels only, no audio read:")
    print(header[0].ljust(width) + "".join(f"{cell:>15}" for cell in header[1:]))
    for index, name in enumerate(names):
        cells = [f"{column[index]:+d}" if number == 2 else str(column[index])
                 for number, column in enumerate(columns)]
        print(name.ljust(width) + "".join(f"{cell:>15}" for cell in cells))
    if args.max_clips_per_label:
        print(f"with the cap: {len(capped)} clips")


def pack_audioset_to_hdf5(args):
    """AudioSet segment CSVs + downloaded clips -> multi-label HDF5 of IAB labels."""
    if args.mapping:
        require_file(args.mapping, "--mapping")
    if args.dry_run:
        return report_label_counts(args)
    if not args.audio_dir:
        raise UsageError("--audio_dir is required (the folder of the downloaded clips), "
                         "except with --dry_run")
    labels = load_label_set(args.iab_labels)
    items, summary = audioset_items(args.segments_csv, args.audio_dir, args.iab_labels,
                                    args.mapping, args.filename_pattern, args.keep_unlabelled)
    attributes = {"label_set": f"iab{args.iab_labels}",
                  "mapping": mapping_used(args.iab_labels, args.mapping),
                  "source": "; ".join(display_path(path) for path in args.segments_csv),
                  "filename_pattern": args.filename_pattern or " or ".join(KNOWN_PATTERNS),
                  "keep_unlabelled": args.keep_unlabelled}
    pack_multi_label(items, labels, summary, args, attributes,
                     "check --audio_dir and --filename_pattern")


def pack_csv_to_hdf5(args):
    """A `file,labels` CSV (labels separated by ';') -> multi-label HDF5."""
    labels, items, summary = csv_items(args.csv, args.audio_dir, resolve_label_names(args.labels),
                                       args.keep_unlabelled)
    attributes = {"label_set": label_set_name(labels), "mapping": "",
                  "source": display_path(args.csv),
                  "keep_unlabelled": args.keep_unlabelled}
    pack_multi_label(items, labels, summary, args, attributes, "check --audio_dir and the CSV")


def cap_items(items, labels, max_clips, seed):
    """--max_clips_per_label: the cap_per_label subset of `items`, its counts logged."""
    targets = np.stack([target for _, _, target in items])
    kept = cap_per_label(targets, max_clips, seed)
    after = targets[kept].sum(axis=0)
    logging.info("--max_clips_per_label=%d keeps %d of %d clips; clips per label (before -> "
                 "after): %s", max_clips, len(kept), len(items), ", ".join(
                     f"{label} {int(b)} -> {int(a)}"
                     for label, b, a in zip(labels, targets.sum(axis=0), after)))
    over = [label for label, count in zip(labels, after) if count > max_clips]
    if over:
        # A label filled early (a rare one) can end above the cap through the clips later
        # labels took that also carry it: a clip counts toward every label it has.
        logging.info("above the cap through clips that other labels needed (a clip counts "
                     "toward every label it carries): %s", "; ".join(over))
    return [items[index] for index in kept]


def pack_multi_label(items, labels, summary, args, attributes, missing_hint, subset_of=None):
    """The multi-label packers' shared end: cap, mini data, nothing-left check, packing, log."""
    output_path = args.output or default_features_path(args.workspace, args.mini_data)
    if getattr(args, "max_clips_per_label", None) and items:
        items = cap_items(items, labels, args.max_clips_per_label, args.seed)
        attributes = dict(attributes, max_clips_per_label=args.max_clips_per_label)
    if args.mini_data:
        items = mini_data_subset(items, MINI_DATA_CLIPS_PER_CLASS)
    if not items:
        report_path = _write_report(output_path, summary.excluded, failed=True)
        example = f"; e.g. {summary.first_missing} is missing ({missing_hint})" \
            if summary.first_missing else ""
        raise UsageError(f"nothing to pack: {summary.describe()}{example}; see {report_path}")
    logging.info("%d clips to pack, %d labels: %s", len(items), len(labels), "; ".join(labels))
    result = pack_to_hdf5(items, labels, config.MULTI_LABEL, output_path, args.sample_rate,
                          args.clip_duration, args.num_workers, args.folds_from, args.seed,
                          attributes, summary.excluded, subset_of, args.shard)
    per_label = np.zeros(len(labels))
    for index in result.kept:
        per_label += result.items[index][2]
    logging.info("%s, %d unreadable, %d packed; every left-out clip and why: %s",
                 summary.describe(), len(result.skipped), len(result.kept),
                 report_path_for(result.path))
    logging.info("clips per label: %s", ", ".join(
        f"{label} {int(count)}" for label, count in zip(labels, per_label)))
    empty = [label for label, count in zip(labels, per_label) if count == 0]
    if empty:
        logging.warning("no packed clip has the label(s) %s: they cannot be learned or scored",
                        "; ".join(empty))
    print(f"Wrote {result.path}")


def pack_iab_seed_to_hdf5(args):
    """The original IAB projects' train / validate / test CSVs + a folder of wavs -> multi-label
    HDF5 with each clip's subset (train with --split=subsets)."""
    subset_csvs = [(subset, flag, path) for subset, flag, path in (
        ("train", "--train_csv", args.train_csv), ("valid", "--validate_csv", args.validate_csv),
        ("test", "--test_csv", args.test_csv)) if path]
    labels, items, subset_of, summary = seed_items(subset_csvs, args.audio_dir,
                                                   args.keep_unlabelled, args.allow_same_video)
    if not args.test_csv:
        logging.warning("no --test_csv: --split=subsets will have no test set to score")
    attributes = {"label_set": label_set_name(labels), "mapping": "",
                  "source": "; ".join(display_path(path) for _, _, path in subset_csvs),
                  "keep_unlabelled": args.keep_unlabelled}
    pack_multi_label(items, labels, summary, args, attributes, "check --audio_dir and the IDs",
                     subset_of)


def add_common_packing_flags(parser, clip_duration):
    add_flags(parser, "workspace", required=("workspace",))
    parser.add_argument("--output", default=None, help="HDF5 path (default WS/features/waveform.h5)")
    parser.add_argument("--mini_data", action="store_true", help="a small file for quick checks")
    parser.add_argument("--sample_rate", type=int_range(8000), default=config.SAMPLE_RATE)
    # From a tenth of a second (a few STFT frames; each model checks its own shortest input at
    # training) to an hour of audio per clip.
    parser.add_argument("--clip_duration", type=float_range(0.1, 3600), default=clip_duration,
                        help="seconds (0.1 to 3600)")
    add_flags(parser, "num_workers")
    parser.add_argument("--folds_from", default=None, help="CSV of name,fold to fix the folds")
    parser.add_argument("--seed", type=non_negative_int, default=1234,
                        help="seed of the fold assignment")
    parser.add_argument("--shard", type=shard, default=None, metavar="I/N",
                        help="pack only shard I of N (1 <= I <= N; clips split by a hash of their "
                             "name, folds dealt over the whole list) into OUTPUT_shards/; run "
                             "I = 1..N on as many machines, then read the folder as --features")


def add_multi_label_flags(parser, keep_unlabelled=False):
    """`keep_unlabelled`: the source's default (the seed CSVs keep their all-zero rows as the
    original projects did; AudioSet lists drop clips of no IAB label)."""
    parser.add_argument("--keep_unlabelled", action=argparse.BooleanOptionalAction,
                        default=keep_unlabelled,
                        help="keep clips with no label (all-zero target) as negatives instead of "
                             "dropping them (default: %(default)s here)")
    add_common_packing_flags(parser, config.AUDIOSET_CLIP_DURATION)


def add_cap_flag(parser):
    parser.add_argument("--max_clips_per_label", type=positive_int, default=None,
                        help="keep at most N clips per label (rarest labels first; a clip counts "
                             "for each of its labels; deterministic under --seed); the log and "
                             "--dry_run give the counts")


def build_parser():
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="mode", required=True)
    gtzan = subparsers.add_parser("pack_audio_files_to_hdf5", help="class-per-folder audio (GTZAN)")
    gtzan.add_argument("--dataset_dir", required=True)
    add_common_packing_flags(gtzan, config.GTZAN_CLIP_DURATION)
    gtzan.set_defaults(handler=pack_audio_files_to_hdf5)

    audioset = subparsers.add_parser(
        "pack_audioset_to_hdf5", help="AudioSet segment CSVs -> IAB content labels (multi-label)")
    audioset.add_argument("--segments_csv", action="extend", nargs="+", required=True,
                          help="AudioSet-style segment CSV(s); repeat the flag or list several; "
                               "a YTID already seen is skipped")
    audioset.add_argument("--audio_dir", default=None, help="folder of the downloaded clips")
    audioset.add_argument("--dry_run", action="store_true",
                          help="read only the CSVs' labels: print the clips per IAB label with "
                               "every mid mapped and with the most specific mids (the rule "
                               "packing uses); write nothing")
    audioset.add_argument("--iab_labels", type=int, choices=LABEL_SET_SIZES, default=5,
                          help="IAB label set: 5 or 20 labels (metadata/iab_labels_N.csv)")
    audioset.add_argument("--mapping", default=None,
                          help="your own AudioSet->IAB mapping CSV (columns mid, iab_labels); "
                               "default metadata/audioset_to_iab_N.csv")
    audioset.add_argument("--filename_pattern", default=DEFAULT_FILENAME_PATTERN,
                          help="clip file name under --audio_dir; placeholders {ytid}, {start}, "
                               "{end} (whole seconds; {start:.3f} for 239.800), {start_ms}, "
                               "{end_ms}. Default: each clip under the first naming that exists "
                               "of 'Y{ytid}.wav' (PANNs) and '{ytid}_{start:.3f}.wav' "
                               "(audioset-processing, the IAB projects')")
    add_multi_label_flags(audioset)
    add_cap_flag(audioset)
    audioset.set_defaults(handler=pack_audioset_to_hdf5)

    plain = subparsers.add_parser("pack_csv_to_hdf5",
                                  help="a file,labels CSV (labels separated by ';'; multi-label)")
    plain.add_argument("--csv", required=True, help="rows file,label1;label2 (header optional)")
    plain.add_argument("--audio_dir", default=None,
                       help="folder that relative paths resolve against (default: the CSV's)")
    plain.add_argument("--labels", default=None,
                       help="5 or 20 (IAB set), comma-separated names, or a labels file "
                            "(one per line, or a CSV with a 'label' column); default every "
                            "label the CSV uses, sorted")
    add_multi_label_flags(plain)
    add_cap_flag(plain)
    plain.set_defaults(handler=pack_csv_to_hdf5)

    seed = subparsers.add_parser(
        "pack_iab_seed_to_hdf5", help="the original IAB projects' CSVs (ID, IAB Vector) with "
                                      "their train / validate / test sets")
    seed.add_argument("--train_csv", required=True)
    seed.add_argument("--validate_csv", required=True, help="selects the checkpoint")
    seed.add_argument("--test_csv", default=None, help="scored once, at the end of training")
    seed.add_argument("--audio_dir", required=True, help="the folder of the wav files (ID)")
    seed.add_argument("--allow_same_video", action="store_true",
                      help="allow clips of one YouTube video (IDs {ytid}_{start}) in two sets")
    add_multi_label_flags(seed, keep_unlabelled=True)
    seed.set_defaults(handler=pack_iab_seed_to_hdf5)

    summary = subparsers.add_parser("shard_summary", help="the shards of a --shard pack: which "
                                    "are packed (clips, bytes), packing or missing")
    summary.add_argument("--shards", required=True, help="the shards' folder (OUTPUT_shards)")
    summary.set_defaults(handler=summarise_shards)
    return parser


def summarise_shards(args):
    """Print the shards' table and write it as summary.json in their folder."""
    summary = shard_summary(args.shards)
    for row in summary["shards"]:
        detail = ""
        if row["status"] == "packed":
            detail = f"{row['clips']} clips of {row['items']}, {row['bytes'] / 1e9:.2f} GB"
        elif row["status"] == "packing":
            detail = f"{row['clips_done']} clips done"
        print(f"{row['shard']:>11}  {row['status']:<10} {detail}")
    print(f"{summary['packed']} of {summary['shards_num']} shards packed: {summary['clips']} clips, "
          f"{summary['bytes'] / 1e9:.2f} GB" + ("" if summary["complete"] else "; not complete"))
    write_json(summary, os.path.join(args.shards, "summary.json"))


def main():
    args = build_parser().parse_args()
    if args.mode != "shard_summary":
        # Before scanning or decoding anything: the output file can be written.
        output = args.output or default_features_path(args.workspace, args.mini_data)
        check_output_file(shard_path(output, *args.shard) if args.shard else output, "--output")
        create_logging(os.path.join(args.workspace, "logs", "features"), args.mode)
    args.handler(args)


if __name__ == "__main__":
    run_cli(main)
