"""Only in the qemu guest: the kernel backend really is what runs.

The lab scenario itself (reachability, idempotence, down) comes from
tests/lab, run in the same guest with NETSETUP_LAB_BACKEND=kernel.
"""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from netsetup.lab import WORKERS, Lab

pytestmark = pytest.mark.skipif(os.environ.get("NETSETUP_VM") != "1",
                                reason="needs the qemu guest (tests/vm/run)")

# Runs netsetup in-process with an audit hook that reports every program it
# starts, so the test can show the kernel backend used no `ip` or `wg`.
AUDITED = (
    "import sys\n"
    "sys.addaudithook(lambda event, args: event == 'subprocess.Popen'"
    " and print('EXEC', args[1], file=sys.stderr))\n"
    "from netsetup.cli import main\n"
    "sys.argv = ['netsetup'] + sys.argv[1:]\n"
    "main()\n"
)


def test_guest_kernel_has_the_wireguard_genl_family() -> None:
    from netsetup.wireguard import kernel_available

    assert kernel_available()


def test_kernel_backend_builds_the_tunnel_with_pyroute2_only(lab: Lab) -> None:
    assert lab.backend == "kernel"
    worker = WORKERS[0].name
    lab.netsetup(worker, "down")
    result = lab.run(worker, [sys.executable, "-c", AUDITED, "apply",
                              "--node", worker, "--backend", "kernel"])
    print(result.stderr)
    assert "EXEC" not in result.stderr  # no ip, wg or nft processes
    assert f"{'wg-mascot'}: create" in result.stderr

    kind = json.loads(lab.run(worker, ["ip", "-j", "-d", "link", "show",
                                       "wg-mascot"]).stdout)[0]
    assert kind["linkinfo"]["info_kind"] == "wireguard"
    assert lab.ssh("master", WORKERS[0].vpn)
    status = json.loads(lab.netsetup(worker, "status", "--json").stdout)
    assert status["backend"] == "kernel"
    (peer,) = status["peers"]
    assert peer["handshake_ok"], peer
    print(f"kernel backend on {os.uname().release}: link kind "
          f"{kind['linkinfo']['info_kind']}, handshake with master "
          f"{peer['latest_handshake_seconds']} s ago at {time.ctime()}")
