"""Embeddings of packed clips, batch by batch, and a .npy written as they come.

Shared by the linear probe's cache (pytorch/linear_probe.py) and `main.py embed`
(pytorch/embed.py): one loop computes a loader's embeddings with progress and refuses
non-finite ones; NpyRows writes rows to a .npy without holding them, so memory stays bounded
whatever the number of clips or windows.
"""
import struct

import numpy as np

from utils.utilities import UsageError, progress

NPY_MAGIC = b"\x93NUMPY\x01\x00"
NPY_HEADER_BYTES = 128  # room for any (rows, width) of float32


def loader_embeddings(embed_batch, loader, source):
    """Yields (names, embeddings (batch, width) float32) for each batch of a clip loader;
    `embed_batch(waveform batch) -> array`. A NaN or inf embedding is an error naming `source`
    (the checkpoint): nothing downstream can use it."""
    for batch in progress(loader, desc="embeddings", unit="batch"):
        embeddings = np.asarray(embed_batch(batch["waveform"]), dtype=np.float32)
        if not np.isfinite(embeddings).all():
            bad = int((~np.isfinite(embeddings)).any(axis=1).sum())
            raise UsageError(f"{source}: the model gives NaN or inf embeddings for {bad} "
                             "clip(s); check the checkpoint and the audio")
        yield list(batch["audio_name"]), embeddings


def npy_header(rows, width):
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {width}), }}"
    padding = NPY_HEADER_BYTES - len(NPY_MAGIC) - 2 - len(text) - 1
    return (NPY_MAGIC + struct.pack("<H", NPY_HEADER_BYTES - len(NPY_MAGIC) - 2)
            + text.encode("latin1") + b" " * padding + b"\n")


class NpyRows:
    """A (rows, width) float32 .npy written to an open binary file a batch at a time: the
    header's space is reserved first and filled with the final shape by close()."""

    def __init__(self, f):
        self.f, self.rows, self.width = f, 0, None
        f.write(b"\0" * NPY_HEADER_BYTES)

    def write(self, array):
        array = np.ascontiguousarray(array, dtype="<f4")
        if self.width is None:
            self.width = array.shape[1]
        self.f.write(array.tobytes())
        self.rows += len(array)

    def close(self):
        self.f.seek(0)
        self.f.write(npy_header(self.rows, self.width or 0))
        self.f.seek(0, 2)
