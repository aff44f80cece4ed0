"""First contact: bring a new cluster up from the master.

The administrator writes the cluster file on the master without public
keys (a draft) and runs `netsetup bootstrap` there. Over the SSH access the
master already has to each worker's LAN address (the access a Mascot
cluster is driven by), it has each worker make its own key pair and return
the public half, completes the file, sends it to every worker, and applies
it everywhere. From then on the master reaches the workers over the VPN
only, through the re-keying agent, and the LAN path to SSH is closed.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from netsetup import apply as applying
from netsetup import clusterfile, engine, files, keys, link, spec, sshkeys
from netsetup.errors import NetsetupError
from netsetup.rekey import AgentClient, RekeyError
from netsetup.settings import Settings

log = logging.getLogger(__name__)


class BootstrapError(NetsetupError):
    """A worker could not be reached or refused a step of the bootstrap."""


@dataclass(frozen=True)
class RemoteShell:
    """The administrator's SSH access to a worker, as root, by LAN address."""

    command: str = "netsetup"  # how to run netsetup on a worker
    user: str = "root"
    identity: Path | None = None
    options: tuple[str, ...] = ()  # extra `-o` options for ssh

    def netsetup(self, host: str, args: list[str],
                 stdin: bytes | None = None) -> str:
        """Run netsetup with `args` on `host`; return its standard output."""
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
        if self.identity is not None:
            argv += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        for option in self.options:
            argv += ["-o", option]
        target = f"[{host}]" if ":" in host else host
        argv += [f"{self.user}@{target}", f"{self.command} {shlex.join(args)}"]
        result = subprocess.run(argv, input=stdin or b"", capture_output=True,
                                timeout=300)
        if result.returncode != 0:
            why = result.stderr.decode(errors="replace").strip()
            raise BootstrapError(f"{host}: netsetup {args[0]}: exit status "
                                 f"{result.returncode}: {why}")
        return result.stdout.decode()


@dataclass
class BootstrapReport:
    keys: dict[str, str] = field(default_factory=dict)
    reachable: dict[str, bool] = field(default_factory=dict)


def bootstrap(settings: Settings, node_name: str | None, backend: str | None,
              shell: RemoteShell) -> BootstrapReport:
    """Complete the draft cluster file and apply it on every node."""
    draft = spec.load(settings.config, require_keys=False)
    addresses = [] if node_name is not None else link.local_addresses()
    master = spec.identify(draft, addresses, node_name)
    if not master.is_master:
        raise BootstrapError(f"{master.name}: bootstrap runs on the master")
    interface = draft.interface
    report = BootstrapReport()

    private, _ = keys.ensure_private_key(settings.key_path(interface))
    report.keys[master.name] = keys.public_key(private)
    ssh_line = sshkeys.ensure_ssh_key(settings.ssh_key_path(interface))
    for worker in draft.workers:
        output = shell.netsetup(str(worker.address),
                                ["keygen", "--interface", interface])
        report.keys[worker.name] = output.strip().splitlines()[-1]
        log.info("%s: public key %s", worker.name, report.keys[worker.name])

    text = settings.config.read_text()
    for name, public in report.keys.items():
        text = clusterfile.set_node_fields(text, name, {"public_key": public})
    text = clusterfile.set_cluster_field(text, "rekey_ssh_key", ssh_line)
    spec.parse(spec.decode(text, str(settings.config)), str(settings.config))
    files.write_atomic(settings.config, text.encode())
    log.info("%s: completed with every node's public key", settings.config)

    ctx = engine.load_context(settings, master.name, backend)
    applying.converge(ctx)
    for worker in ctx.cluster.workers:
        host = str(worker.address)
        shell.netsetup(host, ["--config", str(settings.config), "write-config"],
                       stdin=text.encode())
        # This session comes from the master's LAN address, which the new
        # rules refuse for new connections; the master's way in from now on
        # is the VPN, so the guard's warning does not apply here.
        shell.netsetup(host, ["--config", str(settings.config), "apply",
                              "--node", worker.name, "--allow-lockout"])
        log.info("%s: applied", worker.name)

    client = AgentClient(settings, ctx.cluster)
    for worker in ctx.cluster.workers:
        try:
            client.call(worker, "status", timeout=30)
            report.reachable[worker.name] = True
        except RekeyError as exc:
            log.warning("%s: not reachable over the VPN: %s", worker.name, exc)
            report.reachable[worker.name] = False
    return report
