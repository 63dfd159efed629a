"""Reading a packed HDF5 for training and evaluation: the dataset and the batch samplers."""
import collections
import glob
import hashlib
import logging
import os

import h5py
import numpy as np

from utils.audio import int16_to_float32
from utils.clip_store import ClipStore
from utils.config import FOLDS_NUM, TASKS
from utils.utilities import UsageError

# Map the files into memory when they are smaller than this share of the available RAM.
IN_MEMORY_RAM_FRACTION = 0.5


def _strings(values):
    return [value.decode() if isinstance(value, bytes) else str(value) for value in values]


def feature_files(spec, flag="--features"):
    """The packed files `spec` names: a file, a folder (its *.h5), a glob, or a list of these;
    sorted, each once, so the same files in another order are the same data (and the same
    digest). A name that finds nothing is a UsageError naming it."""
    paths = []
    for entry in [spec] if isinstance(spec, str) else spec:
        if os.path.isdir(entry):
            found = sorted(glob.glob(os.path.join(glob.escape(entry), "*.h5")))
            if not found:
                raise UsageError(f"{flag}={entry}: a folder without .h5 files; pack into it "
                                 "first with utils/features.py")
        elif os.path.isfile(entry):  # before globbing: a file name may hold [ or *
            found = [entry]
        elif glob.has_magic(entry):
            found = sorted(path for path in glob.glob(entry) if os.path.isfile(path))
            if not found:
                raise UsageError(f"{flag}={entry}: no file matches")
        else:
            raise UsageError(f"{flag}={entry}: file not found; pack it first with "
                             "utils/features.py (or pass --features)")
        paths += [os.path.abspath(path) for path in found]
    if not paths:
        raise UsageError(f"{flag}: no file given")
    return sorted(set(paths))


def describe_features(paths):
    """How messages name the data: the file, or the shards' count and folder."""
    if isinstance(paths, str) or len(paths) == 1:
        return paths if isinstance(paths, str) else paths[0]
    folders = sorted({os.path.dirname(path) for path in paths})
    return f"{len(paths)} files in {', '.join(folders)}"


def features_flag(features):
    """--features=... as messages name it."""
    return f"--features={describe_features(features)}"


def features_value(files):
    """What a RunConfig records as its data: the file's absolute path, or the list of them."""
    paths = [path for path, _ in files]
    return paths[0] if len(paths) == 1 else paths


def read_file_info(hdf5_path, flag="--features"):
    """One packed file's configuration and clips, checked for consistency."""
    try:
        with h5py.File(hdf5_path, "r") as hf:
            attrs = dict(hf.attrs)
            info = {
                "labels": [str(label) for label in attrs["labels"]],
                "task": str(attrs["task"]),
                "sample_rate": int(attrs["sample_rate"]),
                "clip_samples": int(attrs["clip_samples"]),
                "folds": hf["fold"][:],
                "audio_names": _strings(hf["audio_name"][:]),
                "targets": hf["target"][:].astype(np.float32),
                "waveform_shape": hf["waveform"].shape,
                "waveform_bytes": hf["waveform"].size * hf["waveform"].dtype.itemsize,
                # train / valid / test per clip, when packed with its own split (seed CSVs)
                "subsets": _strings(hf["subset"][:]) if "subset" in hf else None,
                # one of several shards of one list (utils/features.py --shard=I/N)
                "shard": str(attrs["shard"]) if "shard" in attrs else None,
                "list_digest": str(attrs.get("list_digest", "")),
            }
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise UsageError(f"{flag}={hdf5_path}: not a packed waveform file ({error}); "
                         "repack it with utils/features.py") from None
    problem = hdf5_problem(info)
    if problem:
        raise UsageError(f"{flag}={hdf5_path}: {problem}; repack it with utils/features.py")
    return info


# What every file of one dataset must share.
AGREEING = ("labels", "task", "sample_rate", "clip_samples")


def combine_infos(paths, infos, flag):
    """Several files' infos as one dataset's, in order; a file that disagrees with the first
    is a UsageError naming it."""
    first = infos[0]
    for path, info in zip(paths[1:], infos[1:]):
        for key in AGREEING:
            if info[key] != first[key]:
                raise UsageError(f"{flag}={path}: its {key.replace('_', ' ')} ({info[key]}) "
                                 f"differs from {paths[0]}'s ({first[key]}); give files of one "
                                 "dataset")
        if (info["subsets"] is None) != (first["subsets"] is None):
            raise UsageError(f"{flag}={path}: packed {'without' if info['subsets'] is None else 'with'}"
                             f" train/valid/test subsets, unlike {paths[0]}")
        if info["list_digest"] != first["list_digest"] and info["shard"] and first["shard"]:
            raise UsageError(f"{flag}={path}: a shard of another list than {paths[0]} (packed "
                             "from other CSVs or flags); give the shards of one pack")
    check_shards_complete(paths, infos)
    combined = {key: first[key] for key in AGREEING}
    combined.update(
        folds=np.concatenate([info["folds"] for info in infos]),
        audio_names=[name for info in infos for name in info["audio_names"]],
        targets=np.concatenate([info["targets"] for info in infos]),
        waveform_shape=(sum(info["waveform_shape"][0] for info in infos), first["clip_samples"]),
        waveform_bytes=sum(info["waveform_bytes"] for info in infos),
        subsets=None if first["subsets"] is None else [s for info in infos for s in info["subsets"]],
        shard=None, list_digest=first["list_digest"])
    problem = hdf5_problem(combined)
    if problem:
        raise UsageError(f"{flag}: {describe_features(paths)} together: {problem}")
    return combined


def check_shards_complete(paths, infos):
    """Shards of one pack given without some of their siblings: said in the log, since the
    missing clips are then silently out of every fold."""
    shards = [info["shard"] for info in infos if info["shard"]]
    if not shards:
        return
    total = int(shards[0].split("/")[1])
    present = {int(shard.split("/")[0]) for shard in shards}
    missing = sorted(set(range(1, total + 1)) - present)
    if missing:
        logging.warning("%d of the %d shards of this pack are given (missing %s): the run uses "
                        "the clips of those present only", len(present), total,
                        ", ".join(f"{index}/{total}" for index in missing[:10]))


def read_hdf5_info(spec, flag="--features"):
    """The configuration the packed file(s) carry (labels, task, sample rate, clip length,
    folds, targets), checked for consistency, with `files` [(path, clips)] and the `digest`:
    what identifies the data."""
    paths = feature_files(spec, flag)
    infos = [read_file_info(path, flag) for path in paths]
    info = infos[0] if len(infos) == 1 else combine_infos(paths, infos, flag)
    info["files"] = [(path, len(one["audio_names"])) for path, one in zip(paths, infos)]
    info["digest"] = data_digest(info)
    return info


def hdf5_problem(info):
    """What makes a packed file's contents inconsistent, or None."""
    clips = len(info["audio_names"])
    if info["task"] not in TASKS:
        return f"task {info['task']!r} is neither {' nor '.join(TASKS)}"
    if info["targets"].ndim != 2 or info["targets"].shape[1] != len(info["labels"]):
        return (f"targets of shape {info['targets'].shape} do not fit its "
                f"{len(info['labels'])} labels")
    lengths = {"waveforms": info["waveform_shape"][0], "targets": len(info["targets"]),
               "folds": len(info["folds"])}
    if info["subsets"] is not None:
        lengths["subsets"] = len(info["subsets"])
    uneven = [f"{count} {kind}" for kind, count in lengths.items() if count != clips]
    if uneven:
        return f"{clips} clip names but {', '.join(uneven)}"
    if clips and not np.isin(info["folds"], np.arange(1, FOLDS_NUM + 1)).all():
        return f"folds outside 1..{FOLDS_NUM} ({sorted(set(info['folds'].tolist()))[:5]})"
    if len(set(info["audio_names"])) != clips:
        repeated = sorted({name for name in info["audio_names"]
                           if info["audio_names"].count(name) > 1})[:3] if clips < 10**5 else []
        return f"clip names repeat ({', '.join(repeated) or 'several'})"
    if not np.isfinite(info["targets"]).all():
        return "targets hold NaN or inf"
    return None


def data_digest(info):
    """SHA-256 of the clips' names, folds, targets and subsets: the same data has the same
    digest wherever the file lies; a repack with other folds or labels has another."""
    digest = hashlib.sha256()
    digest.update("\n".join(info["audio_names"]).encode())
    digest.update(np.asarray(info["folds"], dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(info["targets"], dtype=np.float32).tobytes())
    digest.update("\n".join(info["subsets"] or []).encode())
    return digest.hexdigest()


def clips_digest(info):
    """data_digest() whatever the clips' order: the same clips packed in another order (as
    shards, or by another packer) have the same one."""
    order = np.argsort(np.asarray(info["audio_names"], dtype=object), kind="stable")
    subsets = info["subsets"] or []
    return data_digest({"audio_names": [info["audio_names"][i] for i in order],
                        "folds": np.asarray(info["folds"])[order],
                        "targets": np.asarray(info["targets"])[order],
                        "subsets": [subsets[i] for i in order] if subsets else []})


def available_ram_bytes():
    """What the kernel could give without swapping (MemAvailable: free memory plus page cache it
    can drop; the packed files' own cached pages count), else the free memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0


class WaveformDataset:
    """Clips of one or more packed HDF5 files (a path, folder, glob or list), by index:
    {'audio_name', 'waveform', 'target'}.

    With `in_memory` True, or 'auto' and the data fits, the files are memory-mapped: one copy
    per node in the page cache, shared by all ranks and workers (utils/clip_store.py); otherwise
    each clip is read when asked for. Waveforms come back as float32 in [-1, 1], or as the
    stored int16 with `as_int16` so the conversion can happen on the GPU.
    """

    def __init__(self, features, in_memory="auto", as_int16=False):
        self.as_int16 = as_int16
        self.info = info = read_hdf5_info(features)
        self.labels = info["labels"]
        self.task = info["task"]
        self.audio_names = info["audio_names"]
        if in_memory == "auto":
            in_memory = info["waveform_bytes"] < IN_MEMORY_RAM_FRACTION * available_ram_bytes()
        self.in_memory = bool(in_memory)
        self.targets = info["targets"]
        self.clips = ClipStore(info["files"], info["clip_samples"], mapped=self.in_memory)

    def __len__(self):
        return len(self.audio_names)

    def __getitem__(self, index):
        waveform = self.clips.read(index)
        waveform = waveform.copy() if self.as_int16 else int16_to_float32(waveform)
        return {"audio_name": self.audio_names[index], "waveform": waveform,
                "target": self.targets[index]}


class ReadAhead:
    """A batch sampler that tells the dataset each batch `depth` batches before it is read, so
    the kernel fetches its clips from storage meanwhile (lazy reading; no effect when mapped)."""

    def __init__(self, batch_sampler, clips, depth=4):
        self.batch_sampler, self.clips, self.depth = batch_sampler, clips, depth

    def __iter__(self):
        ahead = collections.deque()
        for batch in self.batch_sampler:
            self.clips.advise(batch)
            ahead.append(batch)
            if len(ahead) > self.depth:
                yield ahead.popleft()
        yield from ahead

    def __len__(self):
        return len(self.batch_sampler)


def collate_fn(items):
    """A list of clips -> one dict of stacked arrays (names stay a list)."""
    return {"audio_name": [item["audio_name"] for item in items],
            "waveform": np.stack([item["waveform"] for item in items]),
            "target": np.stack([item["target"] for item in items])}


def split_indices(folds, holdout_fold):
    """Training clips are every fold but the holdout; validation is the holdout fold."""
    folds = np.asarray(folds)
    holdout = folds == int(holdout_fold)
    if not holdout.any():
        raise UsageError(f"--holdout_fold={holdout_fold}: no clip has this fold "
                         f"(the file has folds {sorted(set(folds.tolist()))})")
    return np.flatnonzero(~holdout), np.flatnonzero(holdout)


class TrainSampler:
    """Endless shuffled batches of training indices.

    Passes are concatenated permutations, so every training clip is drawn exactly once per pass
    (a batch that straddles two passes takes its tail from the next one). With mixup the batch is
    doubled: consecutive pairs are mixed into batch_size clips, as in the original recipe.
    state_dict / load_state_dict make an interrupted run resume at the same place.
    """

    def __init__(self, train_indices, batch_size, mixup=False, seed=1234):
        if len(train_indices) == 0:
            raise UsageError("no training clips: every clip is in the holdout fold")
        self.train_indices = np.asarray(train_indices)
        self.batch_size = batch_size * 2 if mixup else batch_size
        self.random_state = np.random.RandomState(seed)
        self.order = self.random_state.permutation(self.train_indices)
        self.pointer = 0

    def __iter__(self):
        while True:
            yield self.next_batch()

    def next_batch(self):
        batch = []
        while len(batch) < self.batch_size:
            if self.pointer == len(self.order):
                self.order = self.random_state.permutation(self.train_indices)
                self.pointer = 0
            take = min(self.batch_size - len(batch), len(self.order) - self.pointer)
            batch.extend(self.order[self.pointer:self.pointer + take].tolist())
            self.pointer += take
        return batch

    def state_dict(self):
        return {"order": self.order.copy(), "pointer": self.pointer,
                "random_state": self.random_state.get_state()}

    def load_state_dict(self, state):
        self.order = np.asarray(state["order"])
        self.pointer = int(state["pointer"])
        self.random_state.set_state(state["random_state"])


class BalancedTrainSampler(TrainSampler):
    """Class-balanced batches for multi-label data (--sampler=balanced): each draw picks a
    label in turn (the labels' order reshuffled every round), then that label's next clip from
    its own shuffled queue; clips with no label form one more group. Rare labels are thus seen
    as often as common ones, as PANNs' balanced AudioSet sampler does. A clip with several
    labels is in each of their queues. Same interface and resumable state as TrainSampler."""

    def __init__(self, train_indices, targets, batch_size, mixup=False, seed=1234):
        super().__init__(train_indices, batch_size, mixup, seed)
        positive = np.asarray(targets)[self.train_indices] >= 0.5
        groups = [self.train_indices[positive[:, label]] for label in range(positive.shape[1])]
        groups.append(self.train_indices[~positive.any(axis=1)])
        self.groups = [group for group in groups if len(group)]
        self.queues = [self.random_state.permutation(group) for group in self.groups]
        self.queue_pointers = [0] * len(self.groups)
        self.round = self.random_state.permutation(len(self.groups))
        self.pointer = 0

    def next_batch(self):
        batch = []
        while len(batch) < self.batch_size:
            if self.pointer == len(self.round):
                self.round = self.random_state.permutation(len(self.groups))
                self.pointer = 0
            group = self.round[self.pointer]
            self.pointer += 1
            if self.queue_pointers[group] == len(self.queues[group]):
                self.queues[group] = self.random_state.permutation(self.groups[group])
                self.queue_pointers[group] = 0
            batch.append(int(self.queues[group][self.queue_pointers[group]]))
            self.queue_pointers[group] += 1
        return batch

    def state_dict(self):
        return {"round": self.round.copy(), "pointer": self.pointer,
                "queues": [queue.copy() for queue in self.queues],
                "queue_pointers": list(self.queue_pointers),
                "random_state": self.random_state.get_state()}

    def load_state_dict(self, state):
        self.round = np.asarray(state["round"])
        self.pointer = int(state["pointer"])
        self.queues = [np.asarray(queue) for queue in state["queues"]]
        self.queue_pointers = [int(value) for value in state["queue_pointers"]]
        self.random_state.set_state(state["random_state"])


class EvaluateSampler:
    """The given (holdout) indices in order, each once, in batches."""

    def __init__(self, indices, batch_size):
        self.indices = np.asarray(indices)
        self.batch_size = batch_size

    def __iter__(self):
        for start in range(0, len(self.indices), self.batch_size):
            yield self.indices[start:start + self.batch_size].tolist()

    def __len__(self):
        return (len(self.indices) + self.batch_size - 1) // self.batch_size
