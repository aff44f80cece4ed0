"""Where netsetup keeps things: one object, so tests and the lab move it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple


# Each setting's variable: NETSETUP_* overrides the default.
ENVIRONMENT = {
    "config": "NETSETUP_CONFIG",
    "state_dir": "NETSETUP_STATE_DIR",
    "run_dir": "NETSETUP_RUN_DIR",
    "wireguard_go": "NETSETUP_WIREGUARD_GO",
    "authorized_keys": "NETSETUP_AUTHORIZED_KEYS",
}


class Settings(NamedTuple):
    """Every path the tool reads or writes, and the programs it runs."""

    config: Path = Path("/etc/netsetup/cluster.toml")
    state_dir: Path = Path("/etc/netsetup")
    run_dir: Path = Path("/run/netsetup")
    wireguard_go: str = "wireguard-go"
    authorized_keys: Path = Path("/root/.ssh/authorized_keys")

    @classmethod
    def from_env(cls) -> Settings:
        """Return the defaults, overridden by NETSETUP_* variables if set."""
        settings = cls()
        for name, variable in ENVIRONMENT.items():
            value = os.environ.get(variable)
            if value:
                kind = type(getattr(settings, name))
                settings = settings._replace(**{name: kind(value)})
        return settings

    def key_path(self, interface: str) -> Path:
        """Return where the private key for `interface` lives."""
        return self.state_dir / f"{interface}.key"

    def ssh_key_path(self, interface: str) -> Path:
        """Return the master's SSH key for reaching the workers' agents."""
        return self.state_dir / f"{interface}.ssh"

    @property
    def applied_config(self) -> Path:
        """A copy of the cluster file as last applied (for reverts)."""
        return self.state_dir / "cluster.applied.toml"

    @property
    def public_key_cache(self) -> Path:
        return self.state_dir / "public-keys"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def rekey_state(self) -> Path:
        return self.state_dir / "rekey.json"

    @property
    def lock_path(self) -> Path:
        return self.run_dir / "lock"

    @property
    def nodelist_state(self) -> Path:
        return self.state_dir / "nodelist"

    @property
    def saved_ruleset(self) -> Path:
        """The last loaded table, restored at boot before the network."""
        return self.state_dir / "firewall.nft"

    @property
    def ruleset_cache(self) -> Path:
        return self.run_dir / "ruleset.cache"

    @property
    def firewall_state(self) -> Path:
        return self.run_dir / "firewall.sha256"
