"""A SYN on a stale conntrack entry is a new connection, and is refused.

When a connection ends without conntrack seeing the end (a peer that
vanished, a reset it did not believe), its entry stays ESTABLISHED for days;
FIN_WAIT and CLOSE_WAIT entries stay for minutes. A SYN from the same ports
matches that entry, and conntrack calls it "established" (it ignores the
SYN, it does not start a new entry). An outsider who reuses such ports, on
purpose or by chance (a flood of connection attempts goes through every
ephemeral port), must still be refused on SSH and 5001.

The entries are put in with `conntrack -I`, in the worker's namespace: the
kernel's own conntrack, so the rules see exactly what a leftover gives them.
"""

from __future__ import annotations

import json
import sys
from itertools import count

import pytest

from helpers import load_table, table_handle
from netsetup.lab import NODES, SERVICE_PORT, Lab

NODE = {node.name: node for node in NODES}
WORKER, OUTSIDER = NODE["worker-1"], NODE["outsider"]

# A connect from a chosen source port; prints whether it succeeded.
CONNECT = r"""
import json, socket, sys
source, port, target, target_port = sys.argv[1:]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.settimeout(0.5)
try:
    s.bind((source, int(port)))
    s.connect((target, int(target_port)))
    ok = True
except OSError:
    ok = False
finally:
    s.close()
print(json.dumps(ok))
"""

# A fresh source port per entry, so no test sees another's leftovers;
# below the ephemeral range (32768 on), which other tests' connections use.
_ports = count(20000)


def _stale_entry(lab: Lab, state: str, dport: int) -> int:
    """Add a conntrack entry from the outsider in `state`; return its port."""
    sport = next(_ports)
    lab.run(WORKER.name, [
        "conntrack", "-I", "-p", "tcp",
        "-s", OUTSIDER.lan4, "-d", WORKER.lan4,
        "--sport", str(sport), "--dport", str(dport),
        "-r", WORKER.lan4, "-q", OUTSIDER.lan4,
        "--reply-port-src", str(dport), "--reply-port-dst", str(sport),
        "--state", state, "--status", "SEEN_REPLY,ASSURED", "--timeout", "300",
    ])
    return sport


def _entry_state(lab: Lab, sport: int) -> str | None:
    """Return the TCP state of the outsider's entry from `sport`, if any."""
    result = lab.run(WORKER.name, ["conntrack", "-L", "-p", "tcp",
                                   "-s", OUTSIDER.lan4, "--sport", str(sport)],
                     check=False)
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[0] == "tcp":
            return fields[3]
    return None


def _connects(lab: Lab, sport: int, dport: int) -> bool:
    result = lab.run(OUTSIDER.name, [sys.executable, "-c", CONNECT,
                                     OUTSIDER.lan4, str(sport), WORKER.lan4,
                                     str(dport)])
    answer: bool = json.loads(result.stdout)
    return answer


@pytest.mark.parametrize("state", ["ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT"])
@pytest.mark.parametrize("dport", [22, SERVICE_PORT])
def test_syn_reusing_a_stale_entry_is_refused(lab: Lab, state: str,
                                              dport: int) -> None:
    assert table_handle(lab, WORKER.name) is not None
    sport = _stale_entry(lab, state, dport)
    assert not _connects(lab, sport, dport)
    # The entry was there all along: the rules refused the SYN despite it.
    assert _entry_state(lab, sport) == state


def test_control_a_plain_established_rule_lets_it_in(lab: Lab) -> None:
    """The same entry gets through a table whose shortcut ignores flags."""
    original = lab.run(WORKER.name, ["nft", "list", "table", "inet",
                                     "netsetup"]).stdout
    weakened = original.replace("tcp flags ! syn ct state", "ct state")
    assert weakened != original
    try:
        load_table(lab, WORKER.name, weakened)
        sport = _stale_entry(lab, "ESTABLISHED", SERVICE_PORT)
        assert _connects(lab, sport, SERVICE_PORT)
        # A port without a stale entry stays closed: the entry did it.
        assert not _connects(lab, next(_ports), SERVICE_PORT)
    finally:
        load_table(lab, WORKER.name, original)
    assert lab.netsetup(WORKER.name, "plan", check=False).returncode == 0
