"""Jinja templates shipped with netsetup (nftables ruleset, systemd units)."""
