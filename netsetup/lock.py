"""One lock per node, so two netsetup runs never interleave."""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from netsetup.errors import LockError

log = logging.getLogger(__name__)


@contextmanager
def node_lock(path: Path, timeout: float = 300.0) -> Iterator[None]:
    """Hold the node's lock; wait up to `timeout` s, saying for whom."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _acquire(fd, path, timeout)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {' '.join(sys.argv)}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _acquire(fd: int, path: Path, timeout: float) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
    log.warning("waiting for the netsetup lock %s, held by pid %s", path, holder)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(0.05)
    raise LockError(f"{path}: still held by pid {holder} after {timeout:.0f} s")
