"""Small shared helpers: user-facing errors, atomic file writes, logging, seeding."""
import contextlib
import csv
import errno
import hashlib
import io
import json
import logging
import math
import os
import pickle
import shutil
import stat
import signal
import sys
import tempfile

import numpy as np
from tqdm import tqdm


class UsageError(Exception):
    """A mistake of the user's (bad flag, missing file): reported in one line, exit code 2."""


# A redirected log (a batch job's file) gets a progress line this often, not one per step.
REDIRECTED_PROGRESS_SECONDS = 30


def progress(iterable=None, **settings):
    """tqdm, updating at most every REDIRECTED_PROGRESS_SECONDS when stderr is not a terminal."""
    if not sys.stderr.isatty():
        settings.setdefault("mininterval", REDIRECTED_PROGRESS_SECONDS)
    return tqdm(iterable, **settings)


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (kill, a scheduler's time limit) ends a run like Ctrl-C


def run_cli(main_function):
    """Run a command-line entry point: user mistakes and file-system faults (permission denied,
    disk full, a folder where a file belongs) become one line on stderr and exit code 2; SIGTERM
    and Ctrl-C stop it cleanly, atomic writes removing their temporary files."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        main_function()
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        reason = " ".join(str(error.strerror or error).split())  # libraries' messages span lines
        print(f"error: {where}{reason}; check the path, its permissions and the free space",
              file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def create_folder(path):
    os.makedirs(path, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(final_path):
    """Yield a temporary path beside final_path; rename it over final_path only on success.

    A killed or failed writer therefore never leaves a file that looks finished.
    """
    folder = os.path.dirname(os.path.abspath(final_path))
    create_folder(folder)
    handle, temp_path = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(final_path)}.", suffix=".tmp")
    os.close(handle)
    try:
        try:
            yield temp_path
            fsync_path(temp_path)  # on disk before the name says it is finished
        except OSError as error:  # a write error names no file: name the one being written
            raise OSError(error.errno, error.strerror or str(error), final_path) from None
        publish(temp_path, final_path)
    finally:
        if os.path.exists(temp_path):
            os.remove(temp_path)


def file_sha256(path, chunk_bytes=2**22):
    """The SHA-256 of a file's bytes, read a chunk at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_path(path):
    """A file's (or a folder's) data and metadata on disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(temp_path, final_path):
    """Put a finished, fsynced temporary file in place under its final name, with the usual
    permissions (mkstemp makes 0600), and make the rename itself survive a crash."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp_path, 0o666 & ~umask)
    os.replace(temp_path, final_path)
    fsync_path(os.path.dirname(os.path.abspath(final_path)))


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain data only: Python's containers and numbers, NumPy arrays and scalars.
    Anything else a pickle names (which plain pickle.load would import and call) is refused."""
    ALLOWED = {("numpy", "dtype"), ("numpy", "ndarray"),
               ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not plain data")


def safe_pickle_load(f):
    """pickle.load for files this project writes (statistics): plain data, never code."""
    return _PlainUnpickler(f).load()


def atomic_pickle_dump(obj, path):
    with atomic_path(path) as temp_path:
        with open(temp_path, "wb") as f:
            pickle.dump(obj, f)


def atomic_write_text(text, path):
    with atomic_path(path) as temp_path:
        with open(temp_path, "w") as f:
            f.write(text)


def write_csv(rows, path):
    """Rows (lists) -> CSV file, atomically."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    atomic_write_text(buffer.getvalue(), path)


def json_safe(value):
    """NaN (e.g. AP of a class without positives) -> null: plain JSON has no NaN."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(data, path):
    atomic_write_text(json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n", path)


def create_logging(log_dir, name="log", filemode="a"):
    """Log to `log_dir/<name>.log` and to the console; returns the log file path."""
    create_folder(log_dir)
    log_path = os.path.join(log_dir, f"{name}.log")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):  # one run per process may call this twice (tests, all folds)
        root.removeHandler(handler)
        handler.close()
    file_handler = logging.FileHandler(log_path, mode=filemode)
    file_handler.setFormatter(logging.Formatter(
        "%(asctime)s %(filename)s[%(lineno)d] %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(file_handler)
    root.addHandler(console)
    return log_path


def check_writable_folder(folder, what):
    """Create `folder` if needed and prove a file can be written there (one-line UsageError)."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError(f"{folder}: {what} is a file, not a folder; move it away")
    try:
        os.makedirs(folder, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".write_test.", delete=True)
        probe.close()
    except OSError as error:
        raise UsageError(f"{folder}: {what} is not writable ({error.strerror}); choose another "
                         "folder or fix its permissions") from None


def allocated_bytes(path):
    """The disk space a file holds (its blocks: a sparse file's holes take none); 0 if absent."""
    try:
        return os.stat(path).st_blocks * 512
    except FileNotFoundError:
        return 0


def full_disk_error(path, folder=None):
    """An ENOSPC OSError naming `path` where the disk holding `folder` (else path's folder) has
    under 1 MiB left, else None: how a library's failed write is told from its other errors
    (torch reports a full disk as a RuntimeError; onnxruntime's quantizer writes its models
    unchecked, and a later step then fails to parse the truncated file)."""
    folder = folder or os.path.dirname(os.path.abspath(path))
    if shutil.disk_usage(folder).free < 2**20:
        return OSError(errno.ENOSPC, "No space left on device", path)
    return None


def check_free_space(folder, needed_bytes, what="a checkpoint"):
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise UsageError(f"{folder}: {free / 2**20:.0f} MiB free, but about "
                         f"{needed_bytes / 2**20:.0f} MiB needed for {what}; free some space or "
                         "write elsewhere")


def remove_stale_temporaries(folders, prefix="."):
    """Remove the temporary files that killed writers left (atomic writes name them
    .<file>.*.tmp); only those starting with `prefix` (e.g. one output's own). Returns their
    paths (logged here, and by the caller again once its log file is open)."""
    removed = []
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            if name.startswith(prefix) and name.endswith(".tmp"):
                os.remove(os.path.join(folder, name))
                removed.append(os.path.join(folder, name))
                logging.info("removed %s, left by an interrupted write", removed[-1])
    return removed


def host_memory_mb():
    """This process's memory in MB, or None where /proc/self/smaps_rollup is missing: 'rss'
    (resident), 'pss' (proportional: a page shared by k processes counts 1/k, so summing over
    processes counts it once), 'anon' (its own heap, counted once per process) and 'file' (its
    share of mapped files' pages: page cache, evictable)."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            fields = {parts[0][:-1]: int(parts[1]) / 1024 for parts in map(str.split, f)
                      if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit()}
        return {"rss": fields["Rss"], "pss": fields["Pss"], "anon": fields["Anonymous"],
                "file": fields["Pss_File"]}
    except (OSError, KeyError):
        return None


def check_output_file(path, flag):
    """Before long work: `path` can be written (not a folder; its folder writable)."""
    if os.path.isdir(path):
        raise UsageError(f"{flag}={path}: is a folder; give a file name")
    check_writable_folder(os.path.dirname(os.path.abspath(path)), f"the folder of {flag}")


def named(path, flag):
    """How a message names a file: with the flag that gave it, if a flag did."""
    return f"{flag}={path}" if flag else str(path)


def open_text(path, flag=None):
    """A UTF-8 text file (a BOM is dropped) as an open text stream; a file in another encoding
    is a one-line UsageError naming it (and the flag that gave it, if any)."""
    require_file(path, flag)
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UsageError(f"{named(path, flag)}: not UTF-8 text (byte 0x{data[error.start]:02x} "
                         f"at offset {error.start}); save it as UTF-8") from None
    return io.StringIO(text, newline="")


def require_file(path, flag=None):
    """Fail with a usage error naming the file (and flag) when a required input is missing."""
    if path and os.path.isdir(path):
        raise UsageError(f"{named(path, flag)}: is a folder; give a file")
    if path and os.path.exists(path) and not os.path.isfile(path):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(os.stat(path).st_mode) else "a device or socket"
        raise UsageError(f"{named(path, flag)}: is {kind}, not a regular file; save the data to "
                         "a file first")
    if not path or not os.path.isfile(path):
        raise UsageError(f"{named(path, flag)}: file not found; check the path")
    return path
