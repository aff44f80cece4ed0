"""Where netsetup keeps things: one object, so tests and the lab move it."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Every path the tool reads or writes, and the programs it runs."""

    config: Path = Path("/etc/netsetup/cluster.toml")
    state_dir: Path = Path("/etc/netsetup")
    run_dir: Path = Path("/run/netsetup")
    wireguard_go: str = "wireguard-go"

    @classmethod
    def from_env(cls) -> Settings:
        """Return the defaults, overridden by NETSETUP_* variables if set."""
        defaults = cls()
        env = os.environ
        return replace(
            defaults,
            config=Path(env.get("NETSETUP_CONFIG") or defaults.config),
            state_dir=Path(env.get("NETSETUP_STATE_DIR") or defaults.state_dir),
            run_dir=Path(env.get("NETSETUP_RUN_DIR") or defaults.run_dir),
            wireguard_go=env.get("NETSETUP_WIREGUARD_GO") or defaults.wireguard_go,
        )

    def key_path(self, interface: str) -> Path:
        """Return where the private key for `interface` lives."""
        return self.state_dir / f"{interface}.key"

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
    def firewall_state(self) -> Path:
        return self.run_dir / "firewall.sha256"
