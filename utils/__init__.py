"""Torch-free helpers: packing, reading, configuration, run folders, metrics, plots."""
import os
import tempfile

# numba (librosa's JIT) caches what it compiles beside the installed package; a user who does
# not own the install gets "cannot cache function" from librosa. Cache in a folder of the
# user's own instead, unless NUMBA_CACHE_DIR says where.
os.environ.setdefault("NUMBA_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"numba-cache-{os.getuid()}"))
