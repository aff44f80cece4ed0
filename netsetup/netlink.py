"""pyroute2's IPRoute, without its package start-up cost.

`import pyroute2` (or of any submodule) first runs pyroute2/__init__.py,
which loads NDB, IPDB and conntrack although netsetup needs only one
class: about 110 ms of a 190 ms cold import, measured with
`python -X importtime`. Registering a bare package module under that name
first lets Python import just the submodules asked for. The rest of
pyroute2 stays importable by its full module paths.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any


def _bare_package() -> None:
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError("pyroute2 is not installed")
    package = types.ModuleType("pyroute2")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    sys.modules["pyroute2"] = package


def iproute() -> Any:
    """Return a new rtnetlink socket (pyroute2's IPRoute)."""
    _bare_package()
    from pyroute2.iproute.linux import IPRoute

    return IPRoute()


def netlink_error() -> type[Exception]:
    """Return pyroute2's NetlinkError class (it carries `.code`, an errno)."""
    _bare_package()
    from pyroute2.netlink.exceptions import NetlinkError

    error: type[Exception] = NetlinkError
    return error
