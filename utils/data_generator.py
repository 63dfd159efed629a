"""Reading a packed HDF5 for training and evaluation: the dataset and the batch samplers."""
import hashlib
import os

import h5py
import numpy as np

from utils.audio import int16_to_float32
from utils.config import FOLDS_NUM, TASKS
from utils.utilities import UsageError

# Load the whole file into memory when it is smaller than this share of the available RAM.
IN_MEMORY_RAM_FRACTION = 0.5


def _strings(values):
    return [value.decode() if isinstance(value, bytes) else str(value) for value in values]


def read_hdf5_info(hdf5_path):
    """The configuration the packed file carries (labels, task, sample rate, clip length, folds,
    targets), checked for consistency, and its `digest`: what identifies the data."""
    if not os.path.isfile(hdf5_path):
        raise UsageError(f"--features={hdf5_path}: file not found; pack it first with "
                         "utils/features.py (or pass --features)")
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
            }
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise UsageError(f"--features={hdf5_path}: not a packed waveform file ({error}); "
                         "repack it with utils/features.py") from None
    problem = hdf5_problem(info)
    if problem:
        raise UsageError(f"--features={hdf5_path}: {problem}; repack it with utils/features.py")
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


def available_ram_bytes():
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0


class WaveformDataset:
    """Clips of a packed HDF5, by index: {'audio_name', 'waveform', 'target'}.

    The file is opened once per process (lazily, so each DataLoader worker gets its own handle),
    or read whole into memory when `in_memory` is True, or 'auto' and it fits.
    Waveforms come back as float32 in [-1, 1], or as the stored int16 with `as_int16` so the
    conversion can happen on the GPU.
    """

    def __init__(self, hdf5_path, in_memory="auto", as_int16=False):
        self.hdf5_path = hdf5_path
        self.as_int16 = as_int16
        self.info = info = read_hdf5_info(hdf5_path)
        self.labels = info["labels"]
        self.task = info["task"]
        self.audio_names = info["audio_names"]
        if in_memory == "auto":
            in_memory = info["waveform_bytes"] < IN_MEMORY_RAM_FRACTION * available_ram_bytes()
        self.in_memory = bool(in_memory)
        self.targets = info["targets"]
        with h5py.File(hdf5_path, "r") as hf:
            self.waveforms = hf["waveform"][:] if self.in_memory else None
        self._file = None

    def __len__(self):
        return len(self.audio_names)

    def __getstate__(self):  # an open h5py handle must not travel to worker processes
        state = self.__dict__.copy()
        state["_file"] = None
        return state

    def _read_waveform(self, index):
        if self.waveforms is not None:
            return self.waveforms[index]
        if self._file is None:
            self._file = h5py.File(self.hdf5_path, "r")
        return self._file["waveform"][index]

    def __getitem__(self, index):
        waveform = self._read_waveform(index)
        if not self.as_int16:
            waveform = int16_to_float32(waveform)
        return {"audio_name": self.audio_names[index], "waveform": waveform,
                "target": self.targets[index]}


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
