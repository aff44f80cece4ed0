"""Assemble the pieces for one node: file -> identity -> desired -> plan.

The CLI calls these; they return values and raise NetsetupError, never
print or exit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from netsetup import keys, link, nodelist, spec, sshkeys
from netsetup import plan as planning
from netsetup.errors import PrivateKeyError
from netsetup.firewall import Nft, render
from netsetup.observe import observe
from netsetup.plan import Action, Desired, Observed
from netsetup.settings import Settings
from netsetup.wireguard import Backend, select

log = logging.getLogger(__name__)


@dataclass
class NodeContext:
    settings: Settings
    cluster: spec.Cluster
    node: spec.Node
    backend: Backend
    nft: Nft


def load_context(
    settings: Settings, node_name: str | None, backend_name: str | None
) -> NodeContext:
    """Read the cluster file and find out which node this machine is."""
    cluster = spec.load(settings.config)
    addresses = [] if node_name is not None else link.local_addresses()
    node = spec.identify(cluster, addresses, node_name)
    backend = select(backend_name, settings.wireguard_go, str(settings.run_dir))
    return NodeContext(settings, cluster, node, backend, Nft())


def desired(ctx: NodeContext) -> Desired:
    """Return the node's desired state; checks the key matches the file."""
    key_path = ctx.settings.key_path(ctx.cluster.interface)
    private_key = keys.effective_private_key(key_path)
    cache = ctx.settings.public_key_cache
    public_key = keys.cached_public_key(private_key, cache)
    # During and after a rotation the file may lag behind the key in use
    # for a while: fine if the file knows the key, or the key this node
    # rotated away from, or a switch is still unsettled.
    known = set(ctx.node.candidate_keys)
    previous = keys.previous_key_path(key_path)
    rotated_from = keys.cached_public_key(keys.read_private_key(previous),
                                          cache) if previous.exists() else None
    switching = keys.switched_at(key_path) is not None
    if public_key not in known and rotated_from not in known and not switching:
        raise PrivateKeyError(
            f"{key_path}: its public key {public_key} is not the one "
            f"{ctx.cluster.path} lists for node {ctx.node.name!r}")
    ruleset = render(ctx.cluster, ctx.node, ctx.settings.ruleset_cache)
    return planning.desired_state(
        ctx.cluster, ctx.node, private_key, public_key, ruleset,
        ctx.settings.authorized_keys, sshkeys.entry(ctx.cluster, ctx.settings))


def compute_plan(ctx: NodeContext) -> tuple[Desired, Observed, list[Action]]:
    """Observe the node and return what apply would do."""
    wanted = desired(ctx)
    observed = observe_node(ctx)
    return wanted, observed, planning.plan(wanted, observed)


def observe_node(ctx: NodeContext) -> Observed:
    """Return the node's current state."""
    return observe(ctx.cluster, ctx.node, ctx.backend, ctx.nft, ctx.settings)


def rewritten_files(ctx: NodeContext) -> dict[str, bool]:
    """Say, per node-list path, whether netsetup holds its original."""
    return {str(path): nodelist.is_rewritten(path, ctx.settings.nodelist_state)
            for path in ctx.cluster.nodelist}
