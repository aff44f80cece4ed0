"""Only in the qemu guest: the kernel backend really is what runs.

The lab scenario itself (reachability, idempotence, down) comes from
tests/lab, run in the same guest with NETSETUP_LAB_BACKEND=kernel.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

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


def test_kernel_backend_builds_the_tunnel_without_starting_a_process(lab: Lab) -> None:
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


# Reads a kernel device with the backend, in the node, as JSON.
READ_DEVICE = (
    "import json, sys\n"
    "from netsetup.wireguard.kernel import KernelBackend\n"
    "state = KernelBackend().read(sys.argv[1])\n"
    "print(json.dumps(None if state is None else {\n"
    "    'private_key': state.private_key, 'listen_port': state.listen_port,\n"
    "    'peers': {k: [p.endpoint and list(p.endpoint), sorted(p.allowed_ips),\n"
    "                  p.persistent_keepalive] for k, p in state.peers.items()}}))\n"
)


def wg_dump(lab: Lab, node: str, device: str) -> dict[str, Any]:
    """`wg show DEVICE dump`, in READ_DEVICE's shape."""
    lines = [line.split("\t") for line in lab.run(
        node, ["wg", "show", device, "dump"]).stdout.strip().splitlines()]
    private, _public, port, _fwmark = lines[0]
    peers = {}
    for key, _psk, endpoint, allowed, _hs, _rx, _tx, keepalive in lines[1:]:
        host_port = None
        if endpoint != "(none)":
            host, _, port_text = endpoint.rpartition(":")
            host_port = [host.strip("[]"), int(port_text)]
        peers[key] = [host_port, sorted(allowed.split(",")) if allowed != "(none)"
                      else [], 0 if keepalive == "off" else int(keepalive)]
    return {"private_key": private, "listen_port": int(port), "peers": peers}


# Configures a kernel device with the backend: 600 peers (several
# WG_CMD_SET_DEVICE messages), then one removed; prints the peers' keys.
CONFIGURE_DEVICE = (
    "import base64, json, os, sys\n"
    "from netsetup.wireguard import DeviceChange, PeerConfig\n"
    "from netsetup.wireguard.kernel import KernelBackend\n"
    "key = lambda: base64.b64encode(os.urandom(32)).decode()\n"
    "peers = tuple(PeerConfig(key(), (f'2001:db8::{i + 1:x}', 51820) if i % 2\n"
    "              else (f'192.0.2.{i % 250 + 1}', 51000 + i),\n"
    "              (f'10.97.{i // 250}.{i % 250 + 1}/32', f'fd00:97::{i + 1:x}/128'),\n"
    "              25 if i % 3 else 0) for i in range(600))\n"
    "backend = KernelBackend()\n"
    "backend.configure(sys.argv[1], DeviceChange(private_key=key(),\n"
    "                  listen_port=51998, set_peers=peers))\n"
    "backend.configure(sys.argv[1], DeviceChange(remove_peers=(peers[0].public_key,)))\n"
    "print(json.dumps([p.public_key for p in peers]))\n"
)


def test_kernel_backend_configures_many_peers_as_wg_reads_them(lab: Lab) -> None:
    node, device = "outsider", "wgset0"
    lab.run(node, ["ip", "link", "add", device, "type", "wireguard"])
    try:
        sent = json.loads(lab.run(node, [sys.executable, "-c", CONFIGURE_DEVICE,
                                         device]).stdout)
        dump = wg_dump(lab, node, device)
        assert dump["listen_port"] == 51998
        assert set(dump["peers"]) == set(sent[1:])
        got = json.loads(lab.run(node, [sys.executable, "-c", READ_DEVICE,
                                        device]).stdout)
        assert got == dump
    finally:
        lab.run(node, ["ip", "link", "del", device], check=False)


def test_kernel_device_read_matches_wg_show_dump(lab: Lab) -> None:
    """Both endpoint families, no endpoint, and a peer whose 2000 allowed
    IPs (56 KiB of attributes) cannot fit one dump message of at most
    32 KiB, so the kernel splits the peer."""
    node, device = "outsider", "wgread0"

    def run(*argv: str) -> str:
        return lab.run(node, list(argv)).stdout.strip()

    keys = [run("wg", "genkey") for _ in range(4)]
    publics = [run("sh", "-c", f"echo {key} | wg pubkey") for key in keys]
    many = ",".join(f"10.99.{i // 250}.{i % 250 + 1}/32" for i in range(2000))
    run("ip", "link", "add", device, "type", "wireguard")
    try:
        run("sh", "-c", f"echo {keys[0]} | wg set {device} private-key "
            "/dev/stdin listen-port 51999")
        run("wg", "set", device, "peer", publics[1], "endpoint", "192.0.2.50:51820",
            "allowed-ips", "10.98.0.1/32,fd00:98::1/128", "persistent-keepalive", "25")
        run("wg", "set", device, "peer", publics[2], "endpoint",
            "[2001:db8::50]:51821", "allowed-ips", "10.98.0.2/32")
        run("wg", "set", device, "peer", publics[3], "allowed-ips", many)

        got = json.loads(run(sys.executable, "-c", READ_DEVICE, device))
        assert got == wg_dump(lab, node, device)
        assert len(got["peers"][publics[3]][1]) == 2000
    finally:
        lab.run(node, ["ip", "link", "del", device], check=False)
    assert json.loads(run(sys.executable, "-c", READ_DEVICE, device)) is None
