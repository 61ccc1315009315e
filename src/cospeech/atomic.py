"""Atomic file writing: write beside the target, flush it to disk, then rename, so that a failure,
an interruption or a power cut never leaves a half-written file or destroys the previous one.

The temporary file is removed on any exception, including `KeyboardInterrupt` and the
`SystemExit` that the command line raises on SIGTERM (see `raise_on_sigterm`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_path(path: str | Path) -> None:
    """Flush a file's or a folder's contents (a folder: its entries, e.g. a rename) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(src: str | Path, dst: str | Path) -> None:
    """Rename `src` onto `dst` and flush the folder, so the rename survives a crash."""
    os.replace(src, dst)
    fsync_path(Path(dst).parent)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ""):
    """Yield a temporary path in the target's folder; on success it is fsynced and replaces `path`.

    `suffix` keeps an extension that writers rely on (e.g. ".mp4" for ffmpeg).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or ".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        fsync_path(tmp)
        replace_durably(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def raise_on_sigterm() -> None:
    """Turn SIGTERM into `SystemExit(143)` so that `finally` blocks (temporary files) run.

    Python's default for SIGTERM ends the process at once. Only the main thread can set a
    handler; elsewhere this does nothing.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
