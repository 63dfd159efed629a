"""A pack that survives being killed, and the shards that let several machines pack one list.

While packing, the HDF5 lies under a hidden name beside its final one (`.NAME.partial`) with a
log of each clip's outcome (`.NAME.progress`). The waveform rows are allocated when the file is
created, so writing a clip changes no HDF5 metadata: after a kill, the file on disk is the one
of the last checkpoint plus raw bytes past it. Every checkpoint flushes the file to disk before
the log says which clips it holds, so a rerun of the same command continues after the last
logged clip: nothing is decoded twice and nothing is lost. The log's first line names the job
(a digest of its clips, folds, targets and format); another job starts afresh.
"""
import fcntl
import hashlib
import logging
import os
import re

import h5py
import numpy as np

from utils.utilities import UsageError, atomic_write_text, fsync_path, publish

# Outcomes of one clip in the log. 'noted' is packed, with a remark for the report.
KEPT, NOTED, SKIPPED = "kept", "noted", "skipped"
CHECKPOINT_CLIPS = 64  # clips between checkpoints: at most this many are decoded again


# ----- shards -----

def shard_of(audio_name, shards_num):
    """The shard (1..N) of a clip: by a hash of its name, so every machine computes the same
    split of the same list, and the shards come out about equal."""
    digest = hashlib.sha256(audio_name.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards_num + 1


def shard_path(output_path, index, total):
    """WS/features/waveform.h5, shard 3/8 -> WS/features/waveform_shards/waveform-00003-of-00008.h5
    (one folder per pack: --features=that folder reads them all)."""
    stem = os.path.splitext(os.path.abspath(output_path))[0]
    name = os.path.basename(stem)
    return os.path.join(f"{stem}_shards", f"{name}-{index:05d}-of-{total:05d}.h5")


# ----- the partial file and its log -----

def create_waveform_dataset(hf, clips, clip_samples):
    """The int16 waveform dataset of a packed file: one chunk per clip (one read per clip).
    Every chunk is allocated now and no fill value written (every row gets written), so
    writing a clip changes only raw bytes, never the file's metadata."""
    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    plist.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    plist.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    return hf.create_dataset("waveform", shape=(clips, clip_samples),
                             maxshape=(None, clip_samples), dtype=np.int16,
                             chunks=(1, clip_samples), dcpl=plist)


def job_digest(items, folds, attributes):
    """What a partial pack is of: its clips (names, paths, targets), folds and format."""
    digest = hashlib.sha256()
    for (name, path, target), fold in zip(items, folds):
        digest.update(f"{name}\0{path}\0{int(fold)}\0".encode())
        digest.update(np.asarray(target, dtype=np.float32).tobytes())
    digest.update(repr(sorted(attributes.items())).encode())
    return digest.hexdigest()


class PartialPack:
    """The in-progress HDF5 of `output_path` and its log. `open` continues a pack of the same
    job or starts one; `record` notes each clip; `checkpoint` makes the notes durable."""

    def __init__(self, output_path, job, rows, clip_samples):
        folder, name = os.path.split(os.path.abspath(output_path))
        self.output_path = output_path
        self.path = os.path.join(folder, f".{name}.partial")
        self.log_path = os.path.join(folder, f".{name}.progress")
        self.lock_path = os.path.join(folder, f".{name}.lock")
        self.lock = None
        self.job, self.rows, self.clip_samples = job, rows, clip_samples
        self.pending = []
        self.hf = None

    def open(self):
        """The outcomes already logged [(status, reason)], in clip order; the HDF5 is open.
        Refused while another process packs the same file (two machines given one shard)."""
        self.lock = open(self.lock_path, "a")
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.lock.close()
            self.lock = None
            raise UsageError(f"another process is packing {self.output_path} now (it holds "
                             f"{self.lock_path}); wait for it, or pack another --shard") from None
        done = self._logged_outcomes()
        if done is not None:
            try:
                self.hf = h5py.File(self.path, "r+", rdcc_nbytes=0)
                waveforms = self.hf["waveform"]
                if self.hf.attrs.get("job") == self.job and waveforms.shape[0] == self.rows:
                    # the log cut back to its last whole line, before more is appended
                    atomic_write_text(self._header() + "".join(
                        self._line(position, *outcome) for position, outcome in enumerate(done)),
                        self.log_path)
                    logging.info("continuing the pack in %s: %d of %d clips done before",
                                 self.path, len(done), self.rows)
                    return done
                self.hf.close()
            except (OSError, KeyError) as error:  # killed while finishing: start again
                logging.warning("%s cannot be continued (%s); packing afresh", self.path, error)
        self._remove_files()
        self._create()
        return []

    def _header(self):
        return f"job\t{self.job}\n"

    @staticmethod
    def _line(position, status, reason):
        return f"{position}\t{status}\t{' '.join((reason or '').split())}\n"

    def _logged_outcomes(self):
        """The log's outcomes up to its first torn or foreign line; None when there is no log
        of this job (or no partial file)."""
        if not (os.path.isfile(self.log_path) and os.path.isfile(self.path)):
            return None
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
        if not lines or lines[0] != self._header().rstrip("\n"):
            return None
        outcomes = []
        for line in lines[1:-1]:  # the last piece follows the last newline: torn or empty
            fields = line.split("\t")
            if len(fields) != 3 or fields[0] != str(len(outcomes)) or \
                    fields[1] not in (KEPT, NOTED, SKIPPED):
                break
            outcomes.append((fields[1], fields[2] or None))
        return outcomes

    def _create(self):
        self.hf = h5py.File(self.path, "w", rdcc_nbytes=0)
        create_waveform_dataset(self.hf, self.rows, self.clip_samples)
        self.hf.attrs["job"] = self.job
        self.hf.flush()
        atomic_write_text(self._header(), self.log_path)

    @property
    def waveforms(self):
        return self.hf["waveform"]

    def record(self, position, status, reason=None):
        self.pending.append(self._line(position, status, reason))
        if len(self.pending) >= CHECKPOINT_CLIPS:
            self.checkpoint()

    def checkpoint(self):
        """The clips written so far on disk, then their outcomes in the log."""
        if not self.pending:
            return
        self.hf.flush()
        fsync_path(self.path)
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write("".join(self.pending))
            f.flush()
            os.fsync(f.fileno())
        self.pending = []

    def close(self):
        """Stop, keeping what is logged (a rerun continues from there)."""
        if self.hf is not None:
            self.checkpoint()
            self.hf.close()
            self.hf = None
        self._unlock(remove=False)

    def _unlock(self, remove):
        if self.lock is not None:
            if remove:
                os.remove(self.lock_path)  # while held: no other packer holds a removed file
            self.lock.close()
            self.lock = None

    def finish(self):
        """Close and rename the file into place (once the caller has cut the rows to those kept
        and written the metadata); the log goes."""
        self.checkpoint()
        self.hf.close()
        self.hf = None
        fsync_path(self.path)
        publish(self.path, self.output_path)
        os.remove(self.log_path)
        self._unlock(remove=True)

    def discard(self):
        """Give the pack up: its files and its lock go."""
        self._remove_files()
        self._unlock(remove=True)

    def _remove_files(self):
        if self.hf is not None:
            try:
                self.hf.close()
            except (OSError, RuntimeError, ValueError):
                pass
            self.hf = None
        for path in (self.path, self.log_path):
            if os.path.exists(path):
                os.remove(path)


# ----- the summary of a sharded pack -----

def shard_summary(folder):
    """{'shards': [...], 'shards_num', 'clips', 'items', 'complete'} of the shards in `folder`:
    each packed one's clips, each unfinished one's progress, the missing ones."""
    if not os.path.isdir(folder):
        raise UsageError(f"--shards={folder}: folder not found")
    pattern = re.compile(r"(.+)-(\d{5})-of-(\d{5})\.h5$")
    rows, totals, lists = {}, set(), set()
    for name in sorted(os.listdir(folder)):
        hidden = name.startswith(".") and name.endswith(".progress")
        match = pattern.match(name[1:-len(".progress")] if hidden else name)
        if not match:
            continue
        index, total = int(match.group(2)), int(match.group(3))
        totals.add(total)
        path = os.path.join(folder, match.group(0))
        if hidden:
            if os.path.exists(path):
                continue  # a stale log beside a finished shard
            with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
                done = max(0, sum(1 for line in f if line.endswith("\n")) - 1)
            rows.setdefault(index, {"shard": f"{index}/{total}", "file": match.group(0),
                                    "status": "packing", "clips_done": done})
            continue
        try:
            with h5py.File(path, "r") as hf:
                attrs = hf.attrs
                rows[index] = {"shard": f"{index}/{total}", "file": name, "status": "packed",
                               "clips": int(hf["waveform"].shape[0]),
                               "items": int(attrs.get("shard_items", hf["waveform"].shape[0])),
                               "bytes": os.path.getsize(path)}
                lists.add(str(attrs.get("list_digest", "")))
        except (OSError, KeyError) as error:
            rows[index] = {"shard": f"{index}/{total}", "file": name, "status": f"unreadable ({error})"}
    if not rows:
        raise UsageError(f"--shards={folder}: no shard files (NAME-00001-of-0000N.h5) in it")
    if len(totals) > 1:
        raise UsageError(f"--shards={folder}: shards of {' and '.join(map(str, sorted(totals)))}-way "
                         "splits are mixed; keep one pack per folder")
    if len(lists) > 1:
        raise UsageError(f"--shards={folder}: its shards were packed from different lists (other "
                         "CSVs or flags); keep one pack per folder")
    total = totals.pop()
    for index in range(1, total + 1):
        rows.setdefault(index, {"shard": f"{index}/{total}", "file": None, "status": "missing"})
    shards = [rows[index] for index in sorted(rows)]
    packed = [row for row in shards if row["status"] == "packed"]
    return {"folder": os.path.abspath(folder), "shards_num": total, "shards": shards,
            "packed": len(packed), "clips": sum(row["clips"] for row in packed),
            "items": sum(row["items"] for row in packed),
            "bytes": sum(row["bytes"] for row in packed),
            "complete": len(packed) == total}
