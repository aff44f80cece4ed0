"""Exception tree: one root, one leaf per subsystem.

Library code raises these; only `netsetup.cli` turns them into messages
and exit codes.
"""


class NetsetupError(Exception):
    """Root of every error netsetup reports to the user."""


class SpecError(NetsetupError, ValueError):
    """The cluster file is unreadable or invalid."""

    def __init__(
        self, path: str, message: str, node: str | None = None,
        field: str | None = None,
    ) -> None:
        self.path = path
        self.node = node
        self.field = field
        where = path
        if node is not None:
            where += f": node {node!r}"
        if field is not None:
            where += f": {field}"
        super().__init__(f"{where}: {message}")


class IdentityError(NetsetupError):
    """This machine cannot be matched to exactly one node of the file."""


class PrivateKeyError(NetsetupError):
    """The node's private key is missing or unreadable."""


class BackendError(NetsetupError):
    """A WireGuard backend failed to read or change the interface."""


class LinkError(NetsetupError):
    """Reading or changing a network link or address failed."""


class FirewallError(NetsetupError):
    """Rendering, validating or loading the nftables table failed."""


class NodeListError(NetsetupError):
    """Rewriting or restoring a node-list file failed."""


class LockError(NetsetupError):
    """The per-node lock could not be taken."""


class LockoutError(NetsetupError):
    """Applying would cut the caller's own SSH session."""


class UnitError(NetsetupError):
    """Rendering or installing the systemd units failed."""
