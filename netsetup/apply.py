"""Carry out a plan: the only module that changes the node.

Order matters for safety: the firewall goes first, so the protected ports
are closed before the tunnel exists; then the interface, its keys and
peers, its addresses, the link state; the node-list files last, once the
addresses they will name can be reached.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from netsetup import faults, files, link, nodelist, sshkeys
from netsetup.errors import LinkError, NetsetupError
from netsetup.firewall import Nft, Ruleset
from netsetup.plan import Action, Desired, device_change
from netsetup.settings import Settings
from netsetup.spec import Cluster
from netsetup.wireguard import Backend

if TYPE_CHECKING:
    from netsetup.engine import NodeContext
    from netsetup.revert import Snapshot

log = logging.getLogger(__name__)

DEVICE_KINDS = {"set-private-key", "set-listen-port", "add-peer", "update-peer",
                "remove-peer", "reset-peers"}


@dataclass
class ConvergeResult:
    actions: list[Action]
    snapshot: Snapshot | None = None  # when --confirm armed a revert
    timer: str = ""


def converge(ctx: NodeContext, confirm_seconds: int | None = None
             ) -> ConvergeResult:
    """Plan and carry out `apply` on the node of `ctx`.

    With `confirm_seconds`, first record a snapshot and start the timer
    that reverts to it unless `netsetup confirm` comes in time. The caller
    holds the node lock.
    """
    from netsetup import engine, revert

    settings = ctx.settings
    pending = revert.load_pending(settings)
    if pending is not None:
        raise revert.PendingError(
            "an apply --confirm is waiting: run `netsetup confirm` to keep it, "
            "or wait for it to revert at "
            + time.strftime("%H:%M:%S", time.localtime(pending.deadline)))
    wanted, _, actions = engine.compute_plan(ctx)
    result = ConvergeResult(actions)
    if not actions:
        return result
    if confirm_seconds is not None:
        result.snapshot = revert.take(settings, ctx.cluster.interface,
                                      ctx.backend, ctx.nft, ctx.cluster.nodelist,
                                      confirm_seconds)
        result.timer = revert.start_timer(result.snapshot, settings)
        faults.point("revert timer started")
    execute(actions, wanted, ctx.backend, ctx.nft, settings)
    return result


def execute(
    actions: list[Action], desired: Desired, backend: Backend, nft: Nft,
    settings: Settings,
) -> None:
    """Carry out `actions` (from plan.plan) in order; log each change."""
    interface = desired.interface
    change = device_change(desired, actions)
    device_done = False
    # The addresses are read back once, after the last address change.
    last_address = max((i for i, a in enumerate(actions)
                        if a.layer == "addresses"), default=None)
    for i, action in enumerate(actions):
        faults.point(f"before {action.kind}")
        if action.kind in DEVICE_KINDS:
            # All key, port and peer changes travel in one message, and are
            # reported in one record (a master of 1000 workers has 1000).
            if not device_done:
                backend.configure(interface, change)
                device_done = True
                log.info("%s", "\n".join(a.summary for a in actions
                                         if a.kind in DEVICE_KINDS))
            continue
        if action.kind == "load-table":
            _load_table(nft, action.data, settings)
        elif action.kind == "create":
            backend.create(interface)
        elif action.kind == "set-mtu":
            link.set_mtu(interface, action.data)
        elif action.kind == "add-address":
            link.add_address(interface, action.data)
        elif action.kind == "remove-address":
            link.del_address(interface, action.data)
        elif action.kind == "set-up":
            link.set_up(interface)
        elif action.kind == "rewrite-nodelist":
            _rewrite_nodelist(action.data, settings.nodelist_state)
        elif action.kind == "authorize-agent":
            settings.authorized_keys.parent.mkdir(mode=0o700, exist_ok=True)
            files.write_atomic(settings.authorized_keys, action.data, mode=0o600
                               if not settings.authorized_keys.exists() else None)
        else:
            raise NetsetupError(f"internal: unknown action {action.kind!r}")
        log.info("%s", action.summary)
        if i == last_address:
            _settle_addresses(interface, desired.addresses)
    _record_applied_config(settings)
    faults.point("done")


def _settle_addresses(interface: str, wanted: tuple[str, ...]) -> None:
    """Read the addresses back before anything (the node list) names them.

    The kernel may remove more than it was asked to: deleting an IPv4
    primary address takes the secondaries of its subnet with it, and a
    wanted address added after a stray one of the same subnet is such a
    secondary. What went that way is added again.
    """
    have = _addresses(interface)
    missing = sorted(set(wanted) - have)
    for cidr in missing:
        link.add_address(interface, cidr)
        log.info("%s: add address %s again (the kernel removed it with the "
                 "primary address of its subnet)", interface, cidr)
    if missing:
        have = _addresses(interface)
    if have != set(wanted):
        raise LinkError(
            f"{interface}: after the address changes it has "
            f"{', '.join(sorted(have)) or 'no address'}, not "
            f"{', '.join(wanted)}; run apply again")


def _addresses(interface: str) -> set[str]:
    state = link.read(interface)
    return set() if state is None else {
        cidr for cidr in state.addresses if not link.is_link_local(cidr)}


def _record_applied_config(settings: Settings) -> None:
    # What `apply --confirm` returns the cluster file to if not confirmed.
    try:
        current = settings.config.read_bytes()
    except FileNotFoundError:
        return
    try:
        if settings.applied_config.read_bytes() == current:
            return
    except FileNotFoundError:
        pass
    files.write_atomic(settings.applied_config, current, mode=0o600)


def _load_table(nft: Nft, ruleset: Ruleset, settings: Settings) -> None:
    state = nft.load(ruleset)
    faults.point("table loaded")
    # What boot restores before any network comes up (restore-firewall).
    files.write_atomic(settings.saved_ruleset, ruleset.text.encode(),
                          mode=0o600)
    faults.point("ruleset saved")
    _write_small(settings.firewall_state, state.listing_digest)


def restore_firewall(nft: Nft, settings: Settings) -> bool:
    """Load the table saved by the last apply; say whether there was one.

    At boot, an `apply --confirm` still waiting for its confirmation was
    never confirmed (its timer died with the old boot): it is reverted here.
    """
    from netsetup import revert
    from netsetup.wireguard import select

    pending = revert.load_pending(settings)
    if pending is not None:
        log.warning("apply %s was not confirmed before the reboot: reverting",
                    pending.id)
        backend = select(pending.backend, settings.wireguard_go,
                         str(settings.run_dir))
        errors = revert.revert(pending, backend, nft, settings)
        if errors:
            raise NetsetupError("revert incomplete: " + "; ".join(errors))
    saved = settings.saved_ruleset
    try:
        text = saved.read_text()
    except FileNotFoundError:
        log.info("%s: nothing saved yet; no table loaded", saved)
        return False
    nft.restore(text)
    state = nft.read()
    if state is not None:
        _write_small(settings.firewall_state, state.listing_digest)
    log.info("table inet netsetup: restored from %s", saved)
    return True


def _rewrite_nodelist(change: nodelist.FileChange, state_dir: Path) -> None:
    # Save the original before touching the file, so a crash in between
    # leaves something `down` can restore.
    nodelist.save_original(change.path, state_dir, change.old, change.new)
    files.write_atomic(change.path, change.new)


def _write_small(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomic(path, (text + "\n").encode())


@dataclass
class DownReport:
    removed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def down(
    cluster: Cluster, backend: Backend, nft: Nft, settings: Settings
) -> DownReport:
    """Remove the interface and the table, restore the files; keep keys.

    Each step runs even if an earlier one failed, so one broken part does
    not leave the others in place.
    """
    report = DownReport()
    try:
        if link.read(cluster.interface) is not None:
            backend.delete(cluster.interface)
            report.removed.append(f"{cluster.interface}: interface removed")
    except NetsetupError as exc:
        report.errors.append(str(exc))
    try:
        settings.saved_ruleset.unlink(missing_ok=True)
        if nft.delete():
            report.removed.append("table inet netsetup: deleted")
        settings.firewall_state.unlink(missing_ok=True)
    except (NetsetupError, OSError) as exc:
        report.errors.append(str(exc))
    for path in cluster.nodelist:
        try:
            outcome = nodelist.restore(path, settings.nodelist_state)
        except (NetsetupError, OSError) as exc:
            report.errors.append(f"{path}: {exc}")
            continue
        if outcome != "untouched":
            report.removed.append(f"{path}: {outcome}")
    try:
        _remove_agent_entry(cluster, settings, report)
    except OSError as exc:
        report.errors.append(f"{settings.authorized_keys}: {exc}")
    for line in report.removed:
        log.info("%s", line)
    return report


def _remove_agent_entry(
    cluster: Cluster, settings: Settings, report: DownReport
) -> None:
    path = settings.authorized_keys
    try:
        current = path.read_bytes()
    except FileNotFoundError:
        return
    new = sshkeys.with_entry(current, None, cluster.name)
    if new != current:
        files.write_atomic(path, new)
        report.removed.append(f"{path}: re-keying entry removed")
