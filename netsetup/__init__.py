"""netsetup: put a cluster on WireGuard and fence its service ports to it."""

__version__ = "0.1.0"
