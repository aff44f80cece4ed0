"""The master's re-keying SSH key and its entry in a worker's authorized_keys.

The entry lets the master's key in only from the master's VPN address and
only to run `netsetup agent` (a forced command), with every other SSH
feature off (`restrict`). It is recognised by its comment, so every other
line of the file stays exactly as it was.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from netsetup.errors import NetsetupError
from netsetup.settings import ENVIRONMENT, Settings
from netsetup.spec import Cluster

MARK = "netsetup-rekey"


def ensure_ssh_key(path: Path) -> str:
    """Return the public line of the SSH key at `path`, creating it first."""
    if not path.exists():
        import subprocess  # once per master: most runs find the key

        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        result = subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", MARK,
             "-f", str(path)], capture_output=True, text=True)
        if result.returncode != 0:
            raise NetsetupError(f"{path}: ssh-keygen failed: "
                                f"{result.stderr.strip()}")
    return path.with_name(path.name + ".pub").read_text().strip()


def agent_command(settings: Settings) -> str:
    """Return the forced command that runs this installation's agent."""
    argv = [sys.executable, "-m", "netsetup", "--config", str(settings.config),
            "agent"]
    # sshd gives the command a clean environment: carry over every setting
    # that is not the default, or the agent would act on the wrong files.
    defaults = Settings()
    env = [f"{variable}={getattr(settings, name)}"
           for name, variable in ENVIRONMENT.items()
           if name != "config"
           and getattr(settings, name) != getattr(defaults, name)]
    prefix = ["env", *env] if env else []
    return shlex.join(prefix + argv)


def entry(cluster: Cluster, settings: Settings) -> str | None:
    """Return the authorized_keys line for the master, or None if unset."""
    if cluster.rekey_ssh_key is None:
        return None
    key_type, key_data = cluster.rekey_ssh_key.split()[:2]
    command = agent_command(settings).replace("\\", "\\\\").replace('"', '\\"')
    return (f'from="{cluster.master.vpn_address}",restrict,command="{command}" '
            f"{key_type} {key_data} {MARK}:{cluster.name}")


def _is_ours(line: bytes, cluster_name: str) -> bool:
    return line.rstrip(b"\r\n").endswith(f" {MARK}:{cluster_name}".encode())


def with_entry(current: bytes | None, line: str | None, cluster_name: str) -> bytes:
    """Return the file with our entry set to `line` (None: removed)."""
    lines = (current or b"").splitlines(keepends=True)
    kept = [item for item in lines if not _is_ours(item, cluster_name)]
    if line is None:
        return b"".join(kept)
    if kept and not kept[-1].endswith(b"\n"):
        kept[-1] += b"\n"
    position = next((i for i, item in enumerate(lines)
                     if _is_ours(item, cluster_name)), None)
    new = (line + "\n").encode()
    if position is None:
        return b"".join(kept) + new
    # keep our line where it was, so a diff of the file shows one change
    before = [item for item in lines[:position] if not _is_ours(item, cluster_name)]
    return b"".join(before) + new + b"".join(kept[len(before):])
