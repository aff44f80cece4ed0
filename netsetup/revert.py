"""Confirm-or-revert: `apply --confirm N` undoes itself unless confirmed.

Before changing anything, apply records a snapshot of what it may change:
the table's text, the WireGuard device and link, every file it may write,
and the cluster file as it was last applied. It then starts a timer that
is not a child of the caller's session (a transient systemd timer where
systemd runs, else a process in a session of its own), so the revert still
happens if the SSH connection drops or the apply process is killed.
`netsetup confirm` removes the snapshot; a timer that finds no snapshot
with its id does nothing.

The snapshot lives in the state directory, not under /run: a node rebooted
before the confirmation reverts at boot (`restore-firewall`), so power
cycling a node that an unconfirmed change cut off brings the old state back,
and `netsetup.service` then applies the restored cluster file.

The revert needs nothing but the snapshot: not the cluster file, which may
be the very thing that was wrong.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from netsetup import files, link
from netsetup.errors import NetsetupError
from netsetup.firewall import Nft
from netsetup.settings import Settings
from netsetup.wireguard import Backend, DeviceChange, PeerConfig

log = logging.getLogger(__name__)


class PendingError(NetsetupError):
    """A confirm-or-revert apply is pending, or none is when one should be."""


@dataclass
class Snapshot:
    id: str
    created: float
    deadline: float
    interface: str
    backend: str
    table: str | None
    link: dict[str, Any] | None
    device: dict[str, Any] | None
    files: dict[str, str | None] = field(default_factory=dict)  # base64
    # Folders whose files apply may add: a revert removes what is new there.
    folders: list[str] = field(default_factory=list)


def pending_path(settings: Settings) -> Path:
    return settings.state_dir / "pending.json"


def last_revert_path(settings: Settings) -> Path:
    return settings.state_dir / "last-revert.json"


def load_pending(settings: Settings) -> Snapshot | None:
    try:
        data = json.loads(pending_path(settings).read_text())
    except FileNotFoundError:
        return None
    return Snapshot(**data)


def _files_to_keep(settings: Settings, nodelists: tuple[Path, ...]) -> list[Path]:
    """Every file an apply may write, so the revert can put each back."""
    paths = [settings.saved_ruleset, settings.firewall_state,
             settings.applied_config, *nodelists]
    state = settings.nodelist_state
    if state.is_dir():
        paths += sorted(p for p in state.rglob("*") if p.is_file())
    return paths


def take(
    settings: Settings, interface: str, backend: Backend, nft: Nft,
    nodelists: tuple[Path, ...], seconds: int,
) -> Snapshot:
    """Record what the node has now and write it as the pending snapshot."""
    from secrets import token_hex  # with shutil, 2.5 ms: only --confirm needs them

    now = time.time()
    link_state = link.read(interface)
    device = backend.read(interface) if link_state is not None else None
    contents: dict[str, str | None] = {}
    for path in _files_to_keep(settings, nodelists):
        try:
            contents[str(path)] = base64.b64encode(path.read_bytes()).decode()
        except FileNotFoundError:
            contents[str(path)] = None
    try:
        # Reverting puts the cluster file back as it was last applied, so
        # a later apply (boot, reload) does not bring the change back.
        applied = settings.applied_config.read_bytes()
        contents[str(settings.config)] = base64.b64encode(applied).decode()
    except FileNotFoundError:
        pass
    snapshot = Snapshot(
        id=token_hex(8),
        created=now,
        deadline=now + seconds,
        interface=interface,
        backend=backend.name,
        table=nft.listing(),
        link=None if link_state is None else {
            "mtu": link_state.mtu, "up": link_state.up,
            "addresses": list(link_state.addresses)},
        device=None if device is None else {
            "private_key": device.private_key,
            "listen_port": device.listen_port,
            "peers": [peer.config()._asdict() for peer in device.peers.values()],
        },
        files=contents,
        folders=[str(settings.nodelist_state)],
    )
    # The snapshot holds the private key: root-only, like the key file.
    settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    files.write_atomic(pending_path(settings),
                          json.dumps(asdict(snapshot)).encode(), mode=0o600)
    return snapshot


def start_timer(snapshot: Snapshot, settings: Settings) -> str:
    """Start the revert timer outside the caller's session; describe it."""
    import shutil
    import subprocess  # only an apply --confirm starts one

    seconds = max(0, round(snapshot.deadline - time.time()))
    command = [sys.executable, "-m", "netsetup", "revert-pending",
               "--id", snapshot.id]
    if Path("/run/systemd/system").is_dir() and shutil.which("systemd-run"):
        unit = f"netsetup-revert-{snapshot.id}"
        setenv = [f"--setenv={k}={v}" for k, v in os.environ.items()
                  if k.startswith("NETSETUP_") and k != "NETSETUP_FAULT_STEP"]
        subprocess.run(["systemd-run", "--quiet", f"--unit={unit}",
                        f"--on-active={seconds}", *setenv, *command],
                       check=True, capture_output=True)
        return f"systemd timer {unit}.timer"
    child_env = {k: v for k, v in os.environ.items()
                 if k != "NETSETUP_FAULT_STEP"}
    with open(settings.run_dir / "revert.log", "ab") as log_file:
        process = subprocess.Popen(
            [*command, "--wait"], stdin=subprocess.DEVNULL, stdout=log_file,
            stderr=log_file, start_new_session=True, env=child_env)
    return f"revert process {process.pid}"


def confirm(settings: Settings) -> Snapshot:
    """Keep the applied state: drop the snapshot the timer would restore."""
    snapshot = load_pending(settings)
    if snapshot is None:
        raise PendingError("nothing to confirm" + _last_revert_note(settings))
    pending_path(settings).unlink()
    return snapshot


def _last_revert_note(settings: Settings) -> str:
    try:
        last = json.loads(last_revert_path(settings).read_text())
    except FileNotFoundError:
        return ""
    when = time.strftime("%H:%M:%S", time.localtime(last["reverted"]))
    return f": the last apply --confirm was reverted at {when}"


def revert(snapshot: Snapshot, backend: Backend, nft: Nft,
           settings: Settings) -> list[str]:
    """Put back everything the snapshot holds; return what could not be."""
    errors = []
    for step in (_revert_table, _revert_interface, _revert_files):
        try:
            step(snapshot, backend, nft)
        except (NetsetupError, OSError) as exc:
            errors.append(str(exc))
    pending_path(settings).unlink(missing_ok=True)
    files.write_atomic(last_revert_path(settings), json.dumps(
        {"id": snapshot.id, "reverted": time.time(), "errors": errors}).encode())
    return errors


def _revert_table(snapshot: Snapshot, backend: Backend, nft: Nft) -> None:
    if snapshot.table is None:
        nft.delete()
    else:
        nft.restore(snapshot.table)
    log.info("table inet netsetup: reverted")


def _revert_interface(snapshot: Snapshot, backend: Backend, nft: Nft) -> None:
    name = snapshot.interface
    current = link.read(name)
    if snapshot.link is None or snapshot.device is None:
        if current is not None:
            backend.delete(name)
            log.info("%s: removed (it did not exist before)", name)
        return
    if current is None:
        backend.create(name)
    device = backend.read(name)
    old_peers = [PeerConfig(**{**peer, "endpoint": tuple(peer["endpoint"])
                               if peer["endpoint"] else None,
                               "allowed_ips": tuple(peer["allowed_ips"])})
                 for peer in snapshot.device["peers"]]
    old_keys = {peer.public_key for peer in old_peers}
    backend.configure(name, DeviceChange(
        private_key=snapshot.device["private_key"],
        listen_port=snapshot.device["listen_port"],
        set_peers=tuple(old_peers),
        remove_peers=tuple(key for key in (device.peers if device else {})
                           if key not in old_keys),
    ))
    _revert_link(name, snapshot.link)
    log.info("%s: reverted", name)


def _revert_link(name: str, old: dict[str, Any]) -> None:
    current = link.read(name)
    assert current is not None
    if current.mtu != old["mtu"]:
        link.set_mtu(name, old["mtu"])
    # IPv6 link-local addresses belong to the kernel, not to the snapshot
    # (a re-created link has a new one).
    have = {a for a in current.addresses if not link.is_link_local(a)}
    want = {a for a in old["addresses"] if not link.is_link_local(a)}
    for cidr in sorted(have - want):
        link.del_address(name, cidr)
    for cidr in sorted(want - have):
        link.add_address(name, cidr)
    if old["up"] and not current.up:
        link.set_up(name)


def _revert_files(snapshot: Snapshot, backend: Backend, nft: Nft) -> None:
    for folder in snapshot.folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file() and str(path) not in snapshot.files:
                path.unlink()
    for name, content in snapshot.files.items():
        path = Path(name)
        if content is None:
            path.unlink(missing_ok=True)
            continue
        data = base64.b64decode(content)
        try:
            if path.read_bytes() == data:
                continue
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomic(path, data)
        log.info("%s: reverted", path)
