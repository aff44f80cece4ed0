"""A table the kernel or libnftables refuses leaves the loaded one in place.

netsetup loads its table without a dry run first: the load is one
transaction (`table`, `delete table`, the new table), so a refusal at any
stage must leave the previous table exactly as it was. Run in the
outsider, which has no netsetup table of its own.
"""

from __future__ import annotations

import json
import sys

import pytest

from netsetup.lab import Lab
from helpers import table_handle

NODE = "outsider"

GOOD = """table inet netsetup {
    chain input {
        type filter hook input priority 0; policy accept;
        tcp dport 5999 counter drop
    }
}
"""
# Each is refused at a different stage.
REFUSED = {
    # by the kernel, while committing: more elements than the set's size
    "kernel": """table inet netsetup {
    set full { type ipv4_addr; size 1; elements = { 192.0.2.1, 192.0.2.2 } }
}
""",
    # by libnftables' parser, before anything is sent
    "syntax": "table inet netsetup {\n    chain input {\n",
    # by libnftables' evaluation: a jump to a chain that does not exist
    "evaluation": """table inet netsetup {
    chain input {
        type filter hook input priority 0; policy accept;
        jump nowhere
    }
}
""",
}

SCRIPT = """
import json, sys
from netsetup.errors import FirewallError
from netsetup.firewall import Nft
text = sys.argv[1]
try:
    Nft().restore(text)
except FirewallError as exc:
    print(json.dumps({"refused": str(exc)}))
else:
    print(json.dumps({"refused": None}))
"""


def restore(lab: Lab, text: str) -> str | None:
    """Load `text` with Nft.restore in the node; return the refusal, if any."""
    result = lab.run(NODE, [sys.executable, "-c", SCRIPT, text])
    refused: str | None = json.loads(result.stdout)["refused"]
    return refused


def listing(lab: Lab) -> str:
    return lab.run(NODE, ["nft", "list", "table", "inet", "netsetup"]).stdout


@pytest.mark.parametrize("stage", sorted(REFUSED))
def test_refused_table_leaves_the_loaded_one(lab: Lab, stage: str) -> None:
    try:
        assert restore(lab, GOOD) is None
        handle, before = table_handle(lab, NODE), listing(lab)
        assert handle is not None and "5999" in before

        refusal = restore(lab, REFUSED[stage])

        assert refusal is not None and refusal.startswith(
            "table inet netsetup: Error")
        assert table_handle(lab, NODE) == handle
        assert listing(lab) == before
    finally:
        lab.run(NODE, ["nft", "delete", "table", "inet", "netsetup"],
                check=False)


def test_restore_replaces_a_loaded_table(lab: Lab) -> None:
    """The control: the same call does swap in a table it accepts."""
    try:
        assert restore(lab, GOOD) is None
        assert restore(lab, GOOD.replace("5999", "5998")) is None
        after = listing(lab)
        assert "5998" in after and "5999" not in after
    finally:
        lab.run(NODE, ["nft", "delete", "table", "inet", "netsetup"],
                check=False)
