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
