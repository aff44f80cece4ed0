"""The worker's side of re-keying: `netsetup agent`, an SSH forced command.

sshd runs it for the master's re-keying key with the client's words in
SSH_ORIGINAL_COMMAND. It understands a handful of one-word requests and
refuses (and logs) anything else, and any caller but the master's VPN
address. Every answer is one JSON object on stdout.

  status   which key the device uses, and whether a switch is unsettled
  prepare  make the next key pair here; answer its public half only
  commit   switch the device to the next key (keywatch settles it later)
  cluster  replace the cluster file with the one on stdin, then apply
"""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping

from netsetup import engine, faults, files, guard, keys, spec
from netsetup import apply as applying
from netsetup.errors import NetsetupError, SpecError
from netsetup.lock import node_lock
from netsetup.settings import Settings

log = logging.getLogger(__name__)

VERBS = ("status", "prepare", "commit", "cluster")
MAX_CLUSTER_FILE = 1 << 20


class AgentRefused(NetsetupError):
    """The request is not part of the protocol or not from the master."""


def handle(
    settings: Settings, environ: Mapping[str, str], stdin: bytes | None = None
) -> dict[str, Any]:
    """Check who asks and what, then answer one request."""
    request = environ.get("SSH_ORIGINAL_COMMAND", "").strip()
    session = guard.ssh_session(environ)
    cluster = spec.load(settings.config)
    master = cluster.master.vpn_address
    if session is None or guard.unmapped(session.client) != master:
        source = "no SSH session" if session is None else str(session.client)
        raise AgentRefused(f"agent: refused {request!r} from {source}: only "
                           f"the master ({master}) may ask")
    if request not in VERBS:
        raise AgentRefused(f"agent: refused {request!r} from {session.client}: "
                           f"not one of {', '.join(VERBS)}")
    with node_lock(settings.lock_path):
        if request == "cluster":
            return _cluster(settings, stdin or b"")
        ctx = engine.load_context(settings, None, None)
        key_path = settings.key_path(ctx.cluster.interface)
        if request == "prepare":
            return {"node": ctx.node.name,
                    "next_public_key": keys.prepare_next(key_path)}
        if request == "commit":
            return _commit(ctx, key_path)
        return _status(ctx, key_path)


def _status(ctx: engine.NodeContext, key_path: Any) -> dict[str, Any]:
    return {
        "node": ctx.node.name,
        "public_key": keys.public_key(keys.effective_private_key(key_path)),
        "switched_at": keys.switched_at(key_path),
    }


def _commit(ctx: engine.NodeContext, key_path: Any) -> dict[str, Any]:
    if keys.switched_at(key_path) is None:
        keys.mark_switched(key_path, time.time())
    faults.point("agent switch marked")
    # The switch itself is an ordinary apply: the desired private key is
    # now the next one. keywatch promotes or abandons it later.
    applying.converge(ctx)
    faults.point("agent switched")
    return _status(ctx, key_path)


def _cluster(settings: Settings, data: bytes) -> dict[str, Any]:
    if len(data) > MAX_CLUSTER_FILE:
        raise AgentRefused("agent: cluster file too large")
    try:
        parsed = spec.decode(data, "<cluster file from the master>")
    except SpecError as exc:
        raise AgentRefused(f"agent: {exc}") from exc
    spec.parse(parsed, "<cluster file from the master>")
    if data != _read(settings):
        files.write_atomic(settings.config, data)
        log.info("%s: replaced with the master's copy", settings.config)
    ctx = engine.load_context(settings, None, None)
    result = applying.converge(ctx)
    return {"node": ctx.node.name, "changes": len(result.actions)}


def _read(settings: Settings) -> bytes | None:
    try:
        return settings.config.read_bytes()
    except FileNotFoundError:
        return None
