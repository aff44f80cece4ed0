"""Point a cluster node list at the VPN and put the original back later.

Mascot Server's ``nodelist.txt`` has no documented format, so the file is
handled as opaque bytes: only whole tokens equal to a mapping key are replaced
and every other byte (line endings, tabs, trailing blanks, comments, bytes that
are not UTF-8) is kept. Tokens inside comments are replaced as well, because
telling a comment apart would need the format we do not have.

Token rule, applied to bytes (keys and values are ASCII):

* Right delimiters are whitespace (space, tab, LF, CR, FF, VT), ``,``, ``;``,
  ``"`` and ``'``. Left delimiters are the same plus ``=``.
* A bare token starts at the start of the data or right after a left delimiter.
  It ends at the end of the data or right before a right delimiter. A key
  without ``:`` (IPv4 address or host name) may also end right before a port
  suffix: ``:`` and one or more digits, followed by the end of the data or a
  right delimiter.
* An IPv6 key may also appear bracketed: ``[key]``. The ``[`` must start a
  token as above, the ``]`` must be followed by the end of the data, a right
  delimiter or a port suffix. Only the text inside the brackets is replaced.
* Bare IPv6 keys never take a port suffix: ``2001:db8::1:5`` is another
  address, not ``2001:db8::1`` on port 5.
* Host names match case-insensitively (DNS), addresses match exactly.

Anything else is a different token, so ``192.0.2.1`` leaves ``192.0.2.11``,
``192.0.2.1.5`` and ``x192.0.2.1`` alone, and ``worker-1`` leaves ``worker-10``
and ``worker-1.example.org`` alone.

The file part keeps the true original under a state directory together with
the sha256 of what was written, so that ``restore`` can tell whether somebody
edited the file in the meantime. While nobody has, each later apply rewrites
the original afresh rather than its own earlier rewrite.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Literal, NamedTuple

from netsetup.files import fsync_dir, refuse_symlink, write_atomic

log = logging.getLogger(__name__)

RestoreResult = Literal["untouched", "restored", "edited-kept"]
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_RIGHT = rb"[ \t\n\r\f\v,;\"']"
_NOT_LEFT = rb"[^ \t\n\r\f\v,;=\"']"
_START = rb"(?<!" + _NOT_LEFT + rb")"
_END = rb"(?=" + _RIGHT + rb"|\Z)"
_END_OR_PORT = rb"(?=" + _RIGHT + rb"|\Z|:[0-9]+(?:" + _RIGHT + rb"|\Z))"

_HOST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}")
_FORBIDDEN = frozenset(" \t\n\r\f\v,;=\"'[]")

_STATE_SUBDIR = "nodelist"
_BACKUP_SUFFIX = ".netsetup-orig"


# --- pure part ---------------------------------------------------------------


def validate_mapping(mapping: Mapping[str, str]) -> None:
    """Raise ValueError unless the mapping is safe for ``rewrite``.

    Every key and value must be an IP address or a host name (ASCII, no
    whitespace, no delimiters), no value may also be a key (names compared
    case-insensitively, addresses also by numeric value) and no two keys may
    differ only in the case of a host name.
    """
    names: dict[str, str] = {}
    numeric: set[_Address] = set()
    for key in mapping:
        address = _check_item("key", key)
        if address is not None:
            numeric.add(address)
            continue
        previous = names.setdefault(key.lower(), key)
        if previous != key:
            raise ValueError(f"keys {previous!r} and {key!r} differ only in case")
    lowered = {key.lower() for key in mapping}
    # Many keys share a value (a node's address and host names all map to
    # its VPN address): check each value once.
    for value in dict.fromkeys(mapping.values()):
        address = _check_item("value", value)
        if value.lower() in lowered or address in numeric:
            raise ValueError(f"value {value!r} is also a key")


def rewrite(data: bytes, mapping: Mapping[str, str]) -> bytes:
    """Return data with every token equal to a key replaced by its value.

    See the module docstring for what a token is. All other bytes are kept.
    ``rewrite(rewrite(d, m), m) == rewrite(d, m)`` holds because no value is
    also a key, which ``validate_mapping`` (called here) enforces.

    Raise ValueError for an invalid mapping, and when a value containing ``:``
    would land in front of a port suffix (``host:5001``), since the result
    would read as a different IPv6 address.
    """
    parts: list[bytes] = []
    pos = 0
    for match in _matches(data, mapping):
        parts.append(data[pos : match.start])
        parts.append(match.new.encode("ascii"))
        pos = match.end
    parts.append(data[pos:])
    return b"".join(parts)


def changed_tokens(
    data: bytes, mapping: Mapping[str, str]
) -> list[tuple[int, str, str]]:
    """Return (line number, old token, new token) for each replacement.

    Line numbers start at 1 and count LF bytes. The old token is spelled as in
    the data, which matters for host names matched case-insensitively.
    """
    changes: list[tuple[int, str, str]] = []
    line, counted = 1, 0
    for match in _matches(data, mapping):
        line += data.count(b"\n", counted, match.start)
        counted = match.start
        changes.append((line, match.old, match.new))
    return changes


class _Match(NamedTuple):
    start: int
    end: int
    old: str
    new: str


def _matches(data: bytes, mapping: Mapping[str, str]) -> Iterator[_Match]:
    """Yield the replacements ``rewrite`` makes, left to right."""
    validate_mapping(mapping)
    if not mapping:
        return
    addresses: dict[str, str] = {}
    names: dict[str, str] = {}
    for key, value in mapping.items():
        if _parse_address(key) is None:
            names[key.lower()] = value
        else:
            addresses[key] = value
    for found in _compile(addresses, names).finditer(data):
        group = found.lastgroup
        assert group is not None
        old = found.group(group).decode("ascii")
        new = addresses[old] if old in addresses else names[old.lower()]
        start, end = found.span(group)
        if group == "plain" and ":" in new and data[end : end + 1] == b":":
            raise ValueError(
                f"{new!r} cannot replace {old!r} in front of a port suffix"
            )
        yield _Match(start, end, old, new)


def _compile(
    addresses: Mapping[str, str], names: Mapping[str, str]
) -> re.Pattern[bytes]:
    """Build the token pattern with groups ``plain``, ``bare6`` and ``br6``."""
    plain = [_alternation(k for k in addresses if ":" not in k)]
    if names:
        plain.append(b"(?i:" + _alternation(names) + b")")
    plain = [alternation for alternation in plain if alternation]
    ipv6 = _alternation(k for k in addresses if ":" in k)
    branches: list[bytes] = []
    if plain:
        branches.append(b"(?P<plain>" + b"|".join(plain) + b")" + _END_OR_PORT)
    if ipv6:
        branches.append(b"(?P<bare6>" + ipv6 + b")" + _END)
        branches.append(rb"\[(?P<br6>" + ipv6 + rb")\]" + _END_OR_PORT)
    return re.compile(_START + b"(?:" + b"|".join(branches) + b")")


def _alternation(keys: Iterable[str]) -> bytes:
    """Return a regex alternation of the keys, longest first."""
    ordered = sorted(keys, key=len, reverse=True)
    return b"|".join(re.escape(k.encode("ascii")) for k in ordered)


def _parse_address(item: str) -> _Address | None:
    try:
        return ipaddress.ip_address(item)
    except ValueError:
        return None


def _check_item(kind: str, item: str) -> _Address | None:
    """Raise ValueError unless `item` may be a key or value; return its address."""
    if not item or not item.isascii():
        raise ValueError(f"{kind} {item!r} must be non-empty ASCII")
    if any(char in _FORBIDDEN for char in item):
        raise ValueError(f"{kind} {item!r} contains whitespace or a delimiter")
    address = _parse_address(item)
    if address is None and not _HOST_NAME.fullmatch(item):
        raise ValueError(f"{kind} {item!r} is neither an IP address nor a host name")
    return address


# --- file part ---------------------------------------------------------------


class FileChange(NamedTuple):
    """A planned rewrite of one file."""

    path: Path
    old: bytes
    new: bytes

    def diff_lines(self) -> list[str]:
        """Return ``line N: old -> new`` for each line that changes."""
        old_lines = self.old.split(b"\n")
        new_lines = self.new.split(b"\n")
        return [
            f"line {number}: {_show(old)} -> {_show(new)}"
            for number, (old, new) in enumerate(zip(old_lines, new_lines), 1)
            if old != new
        ]


def _show(line: bytes) -> str:
    return line.rstrip(b"\r").decode("utf-8", "backslashreplace").strip()


def plan_file(path: Path, mapping: Mapping[str, str]) -> FileChange | None:
    """Return the change rewriting would make, or None if there is none.

    None also means the file does not exist. Raise OSError for a symbolic
    link, which ``write_atomic`` would refuse to replace.
    """
    refuse_symlink(path)
    old = _read_or_none(path)
    if old is None:
        return None
    return file_change(path, old, mapping)


def file_change(path: Path, old: bytes, mapping: Mapping[str, str],
                original: bytes | None = None) -> FileChange | None:
    """Return the change rewriting `old` (the bytes of `path`) would make.

    With `original` (what `saved_original` gives), the new bytes are the
    original rewritten afresh, so tokens of an earlier mapping (a VPN
    address since changed, a node since removed) do not stay behind.
    """
    new = rewrite(old if original is None else original, mapping)
    if new == old:
        return None
    return FileChange(path, old, new)


def saved_original(path: Path, state_dir: Path, current: bytes) -> bytes | None:
    """Return the saved original of path if `current` is our own rewrite.

    Also when `current` is the original itself (put back by hand, or a
    crash before the first write). None when nothing is saved or somebody
    edited the file since we wrote it: the original no longer tells what
    the file should say.
    """
    orig_file, sha_file = _state_files(path, state_dir)
    original = _read_or_none(orig_file)
    if original == current or _sha256(current) in _read_shas(sha_file):
        return original
    return None


def save_original(path: Path, state_dir: Path, current: bytes, written: bytes) -> None:
    """Remember the original of path and the sha256 of what we write there.

    Call this before writing `written` over `current`, so a crash cannot
    lose the original. An original saved earlier is kept: after a second
    apply the file holds our own rewrite, not the true original. If
    `current` is our earlier rewrite, its checksum stays listed too, so a
    crash before the write does not make it look edited.

    If somebody edited the file since our last write, the saved original
    no longer matches it, and `written` is not recorded as ours: `restore`
    then keeps the file, edits and all, and puts the original beside it,
    rather than putting back an original without the edits.
    """
    orig_file, sha_file = _state_files(path, state_dir)
    orig_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    shas = [_sha256(written)]
    original = _read_or_none(orig_file)
    if original is not None:
        if original != current and _sha256(current) not in _read_shas(sha_file):
            log.warning("%s was edited after netsetup rewrote it; rewriting "
                        "it as it stands, and `down` will keep it",
                        path)
            return
        shas.append(_sha256(current))
    else:
        write_atomic(orig_file, current, mode=0o600)
    write_atomic(sha_file, "".join(f"{sha}\n" for sha in shas).encode("ascii"),
                 mode=0o600)


def restore(path: Path, state_dir: Path) -> RestoreResult:
    """Put back the original of path saved by ``save_original``.

    Return "untouched" when nothing was saved for path, "restored" when the
    file holds what we wrote (or was deleted, or already is the original) and
    now holds the original again, and "edited-kept" when somebody edited it
    since: their edits stay and the original goes to ``<path>.netsetup-orig``.
    The saved state is forgotten in the last two cases.
    """
    orig_file, sha_file = _state_files(path, state_dir)
    original = _read_or_none(orig_file)
    if original is None:
        return "untouched"
    current = _read_or_none(path)
    result: RestoreResult
    if current == original:
        result = "restored"
    elif current is None or _sha256(current) in _read_shas(sha_file):
        write_atomic(path, original)
        log.info("restored the original %s", path)
        result = "restored"
    else:
        _keep_edited(path, original)
        result = "edited-kept"
    _forget(orig_file, sha_file)
    return result


def is_rewritten(path: Path, state_dir: Path) -> bool:
    """Return whether an original of path is saved, i.e. we rewrote it."""
    return _state_files(path, state_dir)[0].exists()


def _state_files(path: Path, state_dir: Path) -> tuple[Path, Path]:
    encoded = base64.urlsafe_b64encode(os.fsencode(os.path.abspath(path)))
    stem = encoded.decode("ascii")
    folder = state_dir / _STATE_SUBDIR
    return folder / f"{stem}.orig", folder / f"{stem}.written.sha256"


def _keep_edited(path: Path, original: bytes) -> None:
    backup = _backup_path(path, original)
    if _read_or_none(backup) != original:
        write_atomic(backup, original, mode=0o600)
    log.warning(
        "%s was edited after netsetup rewrote it; keeping the edits, "
        "the original is in %s",
        path,
        backup,
    )


def _backup_path(path: Path, original: bytes) -> Path:
    """Return a backup name that is free or already holds the original."""
    candidate = path.with_name(path.name + _BACKUP_SUFFIX)
    number = 0
    while os.path.lexists(candidate):
        if not candidate.is_symlink() and _read_or_none(candidate) == original:
            return candidate
        number += 1
        candidate = path.with_name(f"{path.name}{_BACKUP_SUFFIX}.{number}")
    return candidate


def _forget(orig_file: Path, sha_file: Path) -> None:
    # The checksum goes first: an original without a checksum still restores
    # safely, it is only treated as edited unless the file equals it.
    sha_file.unlink(missing_ok=True)
    orig_file.unlink(missing_ok=True)
    fsync_dir(orig_file.parent)


def _read_shas(sha_file: Path) -> list[str]:
    """Return the checksums of what we wrote: the last write first."""
    content = _read_or_none(sha_file)
    return [] if content is None else content.decode("ascii", "replace").split()


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
