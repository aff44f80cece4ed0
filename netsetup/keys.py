"""The node's WireGuard key pair: created on the node, never leaves it."""

from __future__ import annotations

import base64
import binascii
import logging
import os
from pathlib import Path

from netsetup.errors import PrivateKeyError
from netsetup.files import fsync_dir

log = logging.getLogger(__name__)


def public_key(private_key: str) -> str:
    """Return the base64 public key that belongs to a base64 private key."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
    )

    raw = X25519PrivateKey.from_private_bytes(base64.b64decode(private_key))
    public = raw.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(public).decode()


def cached_public_key(private_key: str, cache: Path) -> str:
    """Return `public_key(private_key)`, remembered in the file `cache`.

    Importing the X25519 code costs about 35 ms, more than the rest of a
    no-op apply's checks; the cache maps the sha256 of a private key (which
    says nothing about the key) to its public half.
    """
    import hashlib

    digest = hashlib.sha256(private_key.encode()).hexdigest()
    try:
        known = dict(line.split() for line in cache.read_text().splitlines()
                     if line.count(" ") == 1)
    except FileNotFoundError:
        known = {}
    if digest in known:
        return known[digest]
    public = public_key(private_key)
    known = {digest: public, **{k: v for k, v in list(known.items())[:7]}}
    from netsetup.files import write_atomic

    cache.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(cache, "".join(f"{k} {v}\n" for k, v in known.items()).encode(),
                 mode=0o600)
    return public


def generate_private_key() -> str:
    """Return a fresh base64 private key, clamped as WireGuard expects."""
    key = bytearray(os.urandom(32))
    key[0] &= 248
    key[31] = (key[31] & 127) | 64
    return base64.b64encode(bytes(key)).decode()


def read_private_key(path: Path) -> str:
    """Return the base64 private key stored at `path`."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise PrivateKeyError(
            f"{path}: no private key; run `netsetup keygen` first") from None
    except OSError as exc:
        raise PrivateKeyError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        if len(base64.b64decode(text, validate=True)) == 32:
            return text
    except (binascii.Error, ValueError):
        pass
    raise PrivateKeyError(f"{path}: not a base64 WireGuard key")


def ensure_private_key(path: Path) -> tuple[str, bool]:
    """Return the key at `path`, creating it first if missing.

    The second value says whether a key was created.
    """
    if path.exists():
        return read_private_key(path), False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = generate_private_key()
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        # link() fails if another keygen won the race: keep its key.
        try:
            os.link(temp, path)
        except FileExistsError:
            return read_private_key(path), False
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    log.info("%s: private key created", path)
    return key, True


# -- rotation ----------------------------------------------------------------
#
# <interface>.key is the key in use. During a rotation a node may also hold
# <interface>.key.next (the key it will switch to; on the master, the one
# announced in the cluster file), <interface>.key.switched (when a worker
# switched its device to the next key, not yet settled) and
# <interface>.key.prev (the key before the last rotation).


def _sibling(key_path: Path, suffix: str) -> Path:
    return key_path.with_name(key_path.name + suffix)


def next_key_path(key_path: Path) -> Path:
    return _sibling(key_path, ".next")


def previous_key_path(key_path: Path) -> Path:
    return _sibling(key_path, ".prev")


def switched_path(key_path: Path) -> Path:
    return _sibling(key_path, ".switched")


def _write_key(path: Path, key: str) -> None:
    from netsetup.files import write_atomic

    write_atomic(path, (key + "\n").encode(), mode=0o600)


def prepare_next(key_path: Path) -> str:
    """Return the next key's public half, creating the key if missing."""
    path = next_key_path(key_path)
    if path.exists():
        return public_key(read_private_key(path))
    key = generate_private_key()
    _write_key(path, key)
    log.info("%s: next key created", path)
    return public_key(key)


def switched_at(key_path: Path) -> float | None:
    """Return when the device switched to the next key, if it is unsettled."""
    try:
        return float(switched_path(key_path).read_text())
    except FileNotFoundError:
        return None


def mark_switched(key_path: Path, when: float) -> None:
    from netsetup.files import write_atomic

    if not next_key_path(key_path).exists():
        raise PrivateKeyError(f"{next_key_path(key_path)}: no next key to "
                              "switch to")
    write_atomic(switched_path(key_path), f"{when}\n".encode(), mode=0o600)


def effective_private_key(key_path: Path) -> str:
    """Return the key the device should use: the next one while switched."""
    if switched_at(key_path) is not None:
        return read_private_key(next_key_path(key_path))
    return read_private_key(key_path)


def promote(key_path: Path) -> str:
    """Make the next key the key in use; keep the old one as previous.

    Each step is a rename or an atomic write, and the order leaves a state
    the next call can finish: a crash after the first write still has the
    next key on disk.
    """
    new = read_private_key(next_key_path(key_path))
    old = read_private_key(key_path)
    if new == old:  # a crash came after the key was written: finish up
        next_key_path(key_path).unlink(missing_ok=True)
        switched_path(key_path).unlink(missing_ok=True)
        return new
    _write_key(previous_key_path(key_path), old)
    _write_key(key_path, new)
    next_key_path(key_path).unlink(missing_ok=True)
    switched_path(key_path).unlink(missing_ok=True)
    log.info("%s: now %s (was %s)", key_path, public_key(new), public_key(old))
    return new


def abandon(key_path: Path) -> None:
    """Drop an unsettled switch: the device goes back to the key in use."""
    switched_path(key_path).unlink(missing_ok=True)
    next_key_path(key_path).unlink(missing_ok=True)
