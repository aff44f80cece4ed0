"""Rotate the cluster's static WireGuard keys without an outage.

The whole protocol rests on one rule, applied by `plan` on every node:
every key a peer may be using is configured (the listed one, the master's
announced next key, the key before the last rotation), and the peer's
allowed IPs belong to whichever of them completed a handshake last. A
handshake needs both sides to hold matching keys, so "who shook hands
last" is a fact both sides see, and no message of the protocol has to
arrive for a pair to end up agreeing:

- A worker's key: the master asks the worker to `prepare` a next key pair
  (only the public half comes back), lists it in the cluster file as the
  worker's key with the old one as previous, then asks it to `commit`.
  The worker switches its device; its first packet brings a handshake
  with the new key, and the master moves the allowed IPs to it. The
  worker's keywatch promotes the new key once it sees a handshake after
  the switch, or returns to the old key when `rekey_timeout` passes
  without one; the master follows either way by the same rule.
- The master's key: announced one rotation ahead (`next_public_key`), so
  every worker, even one that was off, already accepts it. The master
  switches; the workers' keywatch moves the allowed IPs on the first
  handshake. The very first rotation announces a key and switches to it
  at once only if every worker acknowledged the announcement.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from netsetup import apply as applying
from netsetup import clusterfile, engine, faults, files, keys, spec, sshkeys
from netsetup.errors import NetsetupError
from netsetup.lock import node_lock
from netsetup.plan import Action, Observed, active_key
from netsetup.plan import plan as make_plan
from netsetup.settings import Settings

log = logging.getLogger(__name__)

PEER_KINDS = {"set-private-key", "add-peer", "update-peer", "remove-peer",
              "reset-peers"}


class RekeyError(NetsetupError):
    """Re-keying could not start or a worker's agent failed."""


# -- both sides: follow handshakes and settle an unsettled switch -------------

def peer_actions(actions: list[Action]) -> list[Action]:
    """Keep the key and peer changes of a plan, nothing else."""
    return [action for action in actions if action.kind in PEER_KINDS]


def settle_own_key(ctx: engine.NodeContext, observed: Observed,
                   now: float) -> str | None:
    """Promote or abandon this node's unsettled key switch, if it is time."""
    key_path = ctx.settings.key_path(ctx.cluster.interface)
    since = keys.switched_at(key_path)
    if since is None or observed.device is None:
        return None
    peers = observed.device.peers
    latest = max((peers[k].last_handshake for peer in ctx.cluster.peers_of(ctx.node)
                  for k in peer.candidate_keys if k in peers), default=0.0)
    if latest > since:
        keys.promote(key_path)
        return "promoted"
    if now > since + ctx.cluster.rekey_timeout:
        keys.abandon(key_path)
        return "abandoned"
    return None


def converge_peers(ctx: engine.NodeContext) -> list[str]:
    """Settle the own key, then apply the key and peer part of the plan.

    Leaves everything else (firewall, addresses, files) to `apply`, and
    does nothing on a node whose interface is not up.
    """
    changes = []
    observed = engine.observe_node(ctx)
    if observed.link is None:
        return []
    settled = settle_own_key(ctx, observed, time.time())
    if settled is not None:
        changes.append(f"own key {settled}")
    wanted = engine.desired(ctx)
    actions = peer_actions(make_plan(wanted, observed))
    if actions:
        applying.execute(actions, wanted, ctx.backend, ctx.nft, ctx.settings)
        changes += [action.summary for action in actions]
    return changes


def keywatch(settings: Settings, node_name: str | None, backend: str | None,
             interval: float, rounds: int | None = None) -> None:
    """Follow handshakes for ever (or `rounds` times): the keywatch daemon.

    The cheap part, one read of the device, runs every `interval`; the
    node lock is taken only when something may have to change.
    """
    ctx = engine.load_context(settings, node_name, backend)
    seen: dict[str, float] | None = None
    done = 0
    while rounds is None or done < rounds:
        done += 1
        try:
            device = ctx.backend.read(ctx.cluster.interface)
            handshakes = {k: p.last_handshake for k, p in (
                device.peers if device else {}).items()}
            key_path = settings.key_path(ctx.cluster.interface)
            if handshakes != seen or keys.switched_at(key_path) is not None:
                with node_lock(settings.lock_path):
                    ctx = engine.load_context(settings, node_name, backend)
                    for change in converge_peers(ctx):
                        log.info("keywatch: %s", change)
                seen = handshakes
        except Exception as exc:  # noqa: BLE001 - a daemon outlives one bad round
            # A broken cluster file, a busy lock, a device that went away:
            # say so and try again next round.
            log.warning("keywatch: %s: %s", type(exc).__name__, exc,
                        exc_info=log.isEnabledFor(logging.DEBUG))
            seen = None
        time.sleep(interval)


# -- the master: talking to the workers' agents --------------------------------

@dataclass
class AgentClient:
    settings: Settings
    cluster: spec.Cluster

    def call(self, worker: spec.Node, verb: str, stdin: bytes | None = None,
             timeout: float = 60) -> dict[str, Any]:
        """Ask `worker`'s agent one thing over SSH through the tunnel."""
        lose = os.environ.get("NETSETUP_FAULT_LOSE", "")
        if lose == f"{verb}@{worker.name}:request":
            raise RekeyError(f"{worker.name}: {verb}: request lost (test)")
        key = self.settings.ssh_key_path(self.cluster.interface)
        argv = [
            "ssh", "-F", "/dev/null", "-i", str(key), "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=accept-new",
            "-o", f"UserKnownHostsFile={self.settings.known_hosts}",
            "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
            "-o", "LogLevel=INFO", f"root@{worker.vpn_address}", verb,
        ]
        try:
            result = subprocess.run(argv, input=stdin or b"",
                                    capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise RekeyError(f"{worker.name}: {verb}: no answer in "
                             f"{timeout:.0f} s") from exc
        if lose == f"{verb}@{worker.name}:reply":
            raise RekeyError(f"{worker.name}: {verb}: reply lost (test)")
        if result.returncode != 0:
            why = result.stderr.decode(errors="replace").strip()
            raise RekeyError(f"{worker.name}: {verb}: exit status "
                             f"{result.returncode}" + (f": {why}" if why else ""))
        try:
            answer: dict[str, Any] = json.loads(result.stdout)
        except ValueError as exc:
            raise RekeyError(f"{worker.name}: {verb}: not JSON: "
                             f"{result.stdout[:80]!r}") from exc
        return answer


@dataclass
class RekeyReport:
    rotated: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    master: str = "unchanged"
    gaps: dict[str, float] = field(default_factory=dict)


def _write_cluster(settings: Settings, text: str) -> spec.Cluster:
    where = str(settings.config)
    cluster = spec.parse(spec.decode(text, where), where)
    files.write_atomic(settings.config, text.encode())
    return cluster


def _follow(ctx: engine.NodeContext, until: Callable[[Observed], bool],
            timeout: float, interval: float = 0.01) -> bool:
    """Apply peer changes every `interval` until `until` holds or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ctx = engine.load_context(ctx.settings, ctx.node.name, ctx.backend.name)
        converge_peers(ctx)
        if until(engine.observe_node(ctx)):
            # What made `until` true (a handshake) may have come after the
            # converge above: converge once more so it takes effect.
            converge_peers(ctx)
            return True
        time.sleep(interval)
    return False


def _poke(addresses: list[str]) -> None:
    """Send one datagram to each address so WireGuard starts a handshake."""
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto(b"", (address, 9))
            except OSError:
                pass


def rotate_worker(settings: Settings, ctx: engine.NodeContext,
                  client: AgentClient, worker: spec.Node) -> float:
    """Rotate one worker's key; return how long the switch took (seconds)."""
    faults.point(f"rekey {worker.name} before prepare")
    new_key = client.call(worker, "prepare")["next_public_key"]
    faults.point(f"rekey {worker.name} after prepare")

    observed = engine.observe_node(ctx)
    old_key = active_key(worker.candidate_keys, observed)
    text = clusterfile.set_node_fields(
        settings.config.read_text(), worker.name,
        {"public_key": new_key, "previous_public_key": old_key})
    _write_cluster(settings, text)
    faults.point(f"rekey {worker.name} file written")
    _follow(ctx, lambda o: new_key in (o.device.peers if o.device else {}),
            timeout=5)

    faults.point(f"rekey {worker.name} before commit")
    outcome: dict[str, Any] = {}

    def commit() -> None:
        try:
            outcome["reply"] = client.call(worker, "commit")
        except RekeyError as exc:
            outcome["error"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=commit)
    thread.start()
    switched = _follow(ctx, lambda o: active_key((new_key, old_key), o)
                       == new_key, timeout=ctx.cluster.rekey_timeout / 2)
    gap = time.monotonic() - started
    thread.join()
    faults.point(f"rekey {worker.name} after commit")
    if "error" in outcome:
        raise outcome["error"]
    if not switched:
        raise RekeyError(f"{worker.name}: no handshake with its new key; "
                         "it returns to the old one by itself")
    return gap


def rotate_master(settings: Settings, ctx: engine.NodeContext,
                  client: AgentClient, acknowledged: bool,
                  failed: dict[str, str]) -> str:
    """Switch to the announced key (if any) and announce the next one.

    The current file, which carries the announcement, goes to every worker
    that answers before the switch, so a worker that missed an earlier copy
    catches up now. A worker that is down keeps the copy it had, and that
    one announced the key the master switches to.
    """
    key_path = settings.key_path(ctx.cluster.interface)
    master = ctx.cluster.master
    announced = master.next_public_key
    first = announced is None or not keys.next_key_path(key_path).exists() \
        or keys.prepare_next(key_path) != announced
    if first:
        announced = keys.prepare_next(key_path)
        text = clusterfile.set_node_fields(
            settings.config.read_text(), master.name,
            {"next_public_key": announced})
        _write_cluster(settings, text)
    everyone = _distribute(settings, spec.load(settings.config), client, failed)
    if first and not (everyone and acknowledged):
        # No worker could have learnt this key before: switch only once
        # every one of them has it.
        return f"announced {announced}"

    faults.point("rekey master before switch")
    old = keys.public_key(keys.read_private_key(key_path))
    keys.promote(key_path)
    following = keys.prepare_next(key_path)
    text = clusterfile.set_node_fields(
        settings.config.read_text(), master.name,
        {"public_key": announced, "previous_public_key": old,
         "next_public_key": following})
    _write_cluster(settings, text)
    faults.point("rekey master key switched")
    ctx = engine.load_context(settings, master.name, ctx.backend.name)
    applying.converge(ctx)
    _poke([str(w.vpn_address) for w in ctx.cluster.workers])
    return f"switched to {announced}, announced {following}"


def _distribute(settings: Settings, cluster: spec.Cluster, client: AgentClient,
                failed: dict[str, str]) -> bool:
    """Send the cluster file to every worker; say whether all took it."""
    data = settings.config.read_bytes()
    ok = True
    for worker in cluster.workers:
        try:
            client.call(worker, "cluster", stdin=data)
        except RekeyError as exc:
            failed.setdefault(worker.name, str(exc))
            ok = False
    return ok


def rekey(settings: Settings, node_name: str | None,
          backend: str | None) -> RekeyReport:
    """Rotate every reachable worker's key and the master's; share the file."""
    ctx = engine.load_context(settings, node_name, backend)
    if not ctx.node.is_master:
        raise RekeyError(f"{ctx.node.name}: rekey runs on the master")
    ssh_line = sshkeys.ensure_ssh_key(settings.ssh_key_path(ctx.cluster.interface))
    if ctx.cluster.rekey_ssh_key is None or \
            ctx.cluster.rekey_ssh_key.split()[:2] != ssh_line.split()[:2]:
        raise RekeyError(
            f"{settings.config}: set rekey_ssh_key = \"{ssh_line}\" in "
            "[cluster] and run `netsetup apply` on every worker first")
    client = AgentClient(settings, ctx.cluster)
    report = RekeyReport()
    for worker in ctx.cluster.workers:
        try:
            report.gaps[worker.name] = rotate_worker(settings, ctx, client, worker)
            report.rotated.append(worker.name)
            log.info("%s: key rotated", worker.name)
        except RekeyError as exc:
            report.failed[worker.name] = str(exc)
            log.warning("%s: not rotated: %s", worker.name, exc)
        ctx = engine.load_context(settings, ctx.node.name, ctx.backend.name)
    report.master = rotate_master(settings, ctx, client, not report.failed,
                                  report.failed)
    log.info("%s: %s", ctx.node.name, report.master)
    cluster = spec.load(settings.config)
    _distribute(settings, cluster, client, report.failed)
    record = {"last_rotation": time.time(), "rotated": report.rotated,
              "failed": report.failed, "master": report.master}
    files.write_atomic(settings.rekey_state, json.dumps(record).encode(),
                       mode=0o600)
    return report


def last_rotation(settings: Settings) -> float | None:
    try:
        return float(json.loads(settings.rekey_state.read_text())["last_rotation"])
    except (FileNotFoundError, KeyError, ValueError):
        return None


def key_age(path: Path, now: float) -> float | None:
    try:
        return now - path.stat().st_mtime
    except FileNotFoundError:
        return None
