"""Atomic, durable file replacement: the one way netsetup writes a file.

A reader sees the old content or the new, never a mix; a crash leaves at
worst a temp file, which the next write removes.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import stat
from pathlib import Path

from netsetup import faults


def write_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace the file at path with data, atomically and durably.

    The new file gets the mode, uid and gid of the file it replaces, or mode
    0o644 (owned by us) when there is none. ``mode`` overrides the mode. Raise
    OSError for a symbolic link: replacing it would silently turn the link
    into a plain file. ACLs, extended attributes and SELinux labels are not
    copied.
    """
    import tempfile  # 4 ms (shutil, random): only runs that write pay it

    refuse_symlink(path)
    _remove_stale_temps(path)
    old_mode, owner = _mode_and_owner(path)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".netsetup-tmp", dir=path.parent
    )
    try:
        try:
            _write_all(fd, data)
            if owner is not None:
                # chown before chmod: chown clears set-uid and set-gid bits.
                os.fchown(fd, *owner)
            os.fchmod(fd, old_mode if mode is None else mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        faults.point(f"{path.name} written aside")
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    fsync_dir(path.parent)


def _remove_stale_temps(path: Path) -> None:
    # A run killed between writing the temp file and renaming it leaves the
    # temp behind; the node lock means no other writer owns one now.
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.netsetup-tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


def refuse_symlink(path: Path) -> None:
    if path.is_symlink():
        raise OSError(errno.ELOOP, "refusing to replace a symbolic link", str(path))


def _mode_and_owner(path: Path) -> tuple[int, tuple[int, int] | None]:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return 0o644, None
    return stat.S_IMODE(info.st_mode), (info.st_uid, info.st_gid)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
