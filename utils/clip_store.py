"""The int16 clips of one or more packed HDF5 files, read by one global index.

Packed files store one clip per uncompressed chunk, so a clip is a run of bytes at an offset
HDF5 reports once (chunk_iter). Reading then needs no HDF5 call per clip:

- mapped (the data fits in memory): each file is memory-mapped. The pages live once in the
  node's page cache, shared by every rank and loader worker, instead of one private copy per
  process; the kernel may evict them under pressure and read them again, so memory stays bounded.
- lazy (it does not fit): one pread per clip, of exactly that clip; `advise` asks the kernel to
  read upcoming clips ahead (posix_fadvise WILLNEED) so a step does not wait on storage.

Files whose clips are not plain byte runs (compressed, shuffled, big-endian, or with unwritten
chunks) are read through h5py instead; same values, slower.
"""
import bisect
import mmap
import os

import h5py
import numpy as np

ROW_DTYPE = np.dtype("<i2")


def clip_offsets(dataset):
    """The byte offset of each row of an HDF5 waveform dataset, or None when its rows are not
    plain runs of little-endian int16 in the file."""
    rows, samples = dataset.shape
    plist = dataset.id.get_create_plist()
    if dataset.dtype != ROW_DTYPE or plist.get_nfilters():
        return None
    if dataset.chunks is None:  # contiguous: rows follow each other
        start = dataset.id.get_offset()
        if start is None:
            return None if rows else np.zeros(0, np.int64)
        return start + np.arange(rows, dtype=np.int64) * samples * ROW_DTYPE.itemsize
    chunk_rows, chunk_samples = dataset.chunks
    if chunk_samples != samples:
        return None
    chunk_starts = np.full((rows + chunk_rows - 1) // chunk_rows, -1, dtype=np.int64)

    def record(info):
        chunk_starts[info.chunk_offset[0] // chunk_rows] = info.byte_offset

    dataset.id.chunk_iter(record)
    if (chunk_starts < 0).any():  # a chunk never written: h5py returns its fill value
        return None
    row_in_chunk = np.arange(rows, dtype=np.int64) % chunk_rows
    return chunk_starts[np.arange(rows) // chunk_rows] + row_in_chunk * samples * ROW_DTYPE.itemsize


class ClipStore:
    """Clips of `files` [(path, clips)], concatenated in that order; `mapped` as above."""

    def __init__(self, files, clip_samples, mapped):
        self.paths = [path for path, _ in files]
        self.starts = np.cumsum([0] + [clips for _, clips in files]).tolist()
        self.clip_samples = clip_samples
        self.clip_bytes = clip_samples * ROW_DTYPE.itemsize
        self.mapped = mapped
        self.offsets = []
        for path in self.paths:
            with h5py.File(path, "r") as hf:
                self.offsets.append(clip_offsets(hf["waveform"]))
        self._handles = {}  # per process: fds, mmaps or h5py files, opened on first use

    def __len__(self):
        return self.starts[-1]

    @property
    def nbytes(self):
        return len(self) * self.clip_bytes

    def __getstate__(self):  # open files must not travel to worker processes
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def locate(self, index):
        """(file number, row in that file) of a global clip index."""
        if not 0 <= index < len(self):
            raise IndexError(f"clip {index} of {len(self)}")
        file_number = bisect.bisect_right(self.starts, index) - 1
        return file_number, index - self.starts[file_number]

    def _handle(self, file_number):
        handle = self._handles.get(file_number)
        if handle is None:
            path = self.paths[file_number]
            if self.offsets[file_number] is None:
                handle = h5py.File(path, "r")["waveform"]
            elif self.mapped:
                with open(path, "rb") as f:
                    handle = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                handle.madvise(mmap.MADV_WILLNEED)  # start reading it in, in the background
            else:
                handle = os.open(path, os.O_RDONLY)
            self._handles[file_number] = handle
        return handle

    def read(self, index):
        """Clip `index` as int16 (a read-only view into the mapping when mapped)."""
        file_number, row = self.locate(index)
        handle = self._handle(file_number)
        offsets = self.offsets[file_number]
        if offsets is None:
            return handle[row]
        if self.mapped:
            return np.frombuffer(handle, ROW_DTYPE, self.clip_samples, int(offsets[row]))
        data = os.pread(handle, self.clip_bytes, int(offsets[row]))
        if len(data) != self.clip_bytes:
            raise OSError(f"{self.paths[file_number]}: clip {row} is cut short (file truncated?)")
        return np.frombuffer(data, ROW_DTYPE)

    def read_batch(self, indices):
        return np.stack([self.read(index) for index in indices])

    def advise(self, indices):
        """Ask the kernel to read these clips ahead (lazy reading only; a hint, never waits)."""
        if self.mapped:
            return
        for index in indices:
            file_number, row = self.locate(index)
            offsets = self.offsets[file_number]
            if offsets is not None:
                os.posix_fadvise(self._handle(file_number), int(offsets[row]), self.clip_bytes,
                                 os.POSIX_FADV_WILLNEED)

    def blocks(self, max_bytes=2**28):
        """The clips in order, as (rows, clip_samples) arrays of at most `max_bytes`."""
        rows = max(1, max_bytes // self.clip_bytes)
        for start in range(0, len(self), rows):
            yield self.read_batch(range(start, min(start + rows, len(self))))
