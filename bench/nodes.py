"""The namespaces the benchmarks run in, and how commands enter them.

A `Node` is a network namespace plus a private mount namespace (so that
wireguard-go's fixed socket directory, /run/wireguard, is the node's own),
both held open by a `sleep` process. Every command, netsetup or baseline,
enters with `nsenter -t HOLDER -n -m`, so entering costs both sides the
same. Before anything is entered, the holder is checked to still be the
`sleep` in the namespace recorded when the node was made, and that
namespace to differ from this process's: nothing runs in the machine's
own namespace.

`Solo` builds one such node from scratch (the master with N workers);
`lab_node` wraps a node of netsetup.lab.Lab.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from bench import meter
from bench.proc import BenchError, Sample, measure
from netsetup.lab import INTERFACE, Lab

PYTHON = sys.executable
NETSETUP = str(Path(sys.executable).parent / "netsetup")
METER = str(Path(meter.__file__))
NODE_COMMANDS = ("apply", "plan", "status", "down")


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """Return this process's environment without netsetup's, wireguard-go's
    and Python's knobs, plus `extra`."""
    env = {key: value for key, value in without_python_knobs(os.environ).items()
           if not key.startswith("NETSETUP_")}
    # Any value but "1" makes wireguard-go re-execute itself forever.
    env.pop("WG_PROCESS_FOREGROUND", None)
    env.update(extra)
    return env


PYTHON_KNOBS = ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED")


def without_python_knobs(env: Mapping[str, str]) -> dict[str, str]:
    """Return `env` without the Python variables an installed netsetup
    runs without.

    They matter: PYTHONDONTWRITEBYTECODE with a stale bytecode cache would
    time the compiler, PYTHONUNBUFFERED a write per output line.
    PYTHONPYCACHEPREFIX stays: the qemu guest keeps its bytecode there.
    """
    return {key: value for key, value in env.items() if key not in PYTHON_KNOBS}


def netns_inode(pid: int | str) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def _comm(pid: int | str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def pids_in_netns(inode: int) -> list[int]:
    """Return the pids whose network namespace has inode `inode`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if netns_inode(entry) == inode:
                found.append(int(entry))
        except OSError:
            continue
    return found


@dataclass
class Node:
    """One cluster node in namespaces of ours, entered via its holder."""

    name: str  # the node's name in the cluster file (--node)
    netns: str
    holder: int
    env: dict[str, str]
    state_dir: Path  # NETSETUP_STATE_DIR as this machine sees it
    run_dir: Path  # NETSETUP_RUN_DIR as this machine sees it
    interface: str = INTERFACE
    config: Path | None = None  # passed as --config when set
    inode: int = field(init=False)

    def __post_init__(self) -> None:
        self.inode = netns_inode(self.holder)
        self._check()

    # -- entering --------------------------------------------------------

    def _check(self) -> None:
        """Refuse to run anything unless the holder is ours and not the host."""
        try:
            inode = netns_inode(self.holder)
        except OSError as exc:
            raise BenchError(f"{self.netns}: holder {self.holder} is gone") from exc
        if inode != self.inode or _comm(self.holder) != "sleep":
            raise BenchError(f"{self.netns}: holder {self.holder} changed")
        if inode == netns_inode("self"):
            raise BenchError(f"{self.netns}: holder is in this machine's "
                             "own network namespace; refusing")

    def argv(self, command: list[str]) -> list[str]:
        self._check()
        return ["nsenter", "-t", str(self.holder), "-n", "-m", "--", *command]

    def measure(self, command: list[str], timeout: float = 600.0) -> Sample:
        """Run `command` in the node; return its time from the outside."""
        return measure(self.argv(command), self.env, timeout)

    def peak_rss_kib(self, command: list[str], what: str) -> int:
        """Return the max RSS of `command`, forked by a small process."""
        sample = self.measure([PYTHON, METER, *command]).check(what)
        try:
            kib, code = meter.parse(sample.stdout)
        except ValueError as exc:
            raise BenchError(f"{what}: {exc}") from exc
        if code != 0:
            raise BenchError(f"{what} exited {code}: {sample.stderr.strip()}")
        return kib

    def run(self, command: list[str], check: bool = True,
            timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
        """Run `command` in the node (not measured)."""
        result = subprocess.run(self.argv(command), env=self.env, text=True,
                                capture_output=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise BenchError(f"{self.name}: {' '.join(command)} exited "
                             f"{result.returncode}: {result.stderr.strip()}")
        return result

    def sh(self, script: str,
           check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-c", script], check=check)

    def netsetup(self, command: str, *args: str) -> list[str]:
        """Return the argv of the netsetup CLI acting as this node."""
        argv = [NETSETUP]
        if self.config is not None:
            argv += ["--config", str(self.config)]
        argv.append(command)
        if command in NODE_COMMANDS:
            argv += ["--node", self.name]
        return argv + list(args)

    # -- waiting for wireguard-go ----------------------------------------

    def inside(self, path: Path) -> Path:
        """Return `path` as the node's mount namespace has it."""
        return Path(f"/proc/{self.holder}/root") / path.relative_to("/")

    def wireguard_go_pids(self) -> list[int]:
        return [pid for pid in pids_in_netns(self.inode)
                if _comm(pid) == "wireguard-go"]

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until no wireguard-go runs in the node and its socket is gone."""
        sock = self.inside(Path("/run/wireguard") / f"{self.interface}.sock")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.wireguard_go_pids() and not sock.exists():
                return
            time.sleep(0.01)
        raise BenchError(f"{self.name}: wireguard-go still running "
                         f"{timeout:.0f} s after its link was removed")


def lab_node(lab: Lab, name: str) -> Node:
    """Return a Node for the lab's node `name`."""
    node_dir = lab.node_dir(name)
    return Node(name=name, netns=lab.netns(name), holder=lab.holder(name),
                env=without_python_knobs(lab.env()), state_dir=node_dir / "etc",
                run_dir=node_dir / "run")


class Solo:
    """A namespace of our own for one node, with a LAN link and routes.

    The LAN is one side of a veth pair whose other end stays in the same
    namespace (no dummy links in this kernel): 192.0.2.10/24 and
    2001:db8::10/64 on-link, 198.51.100.0/24 and 203.0.113.0/24 via a
    router at 192.0.2.1, so routes to every worker exist as on a real LAN.
    """

    ADDRESSES = ("192.0.2.10/24", "2001:db8::10/64")
    ROUTED = ("198.51.100.0/24", "203.0.113.0/24")
    GATEWAY = "192.0.2.1"

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self.holder: int | None = None
        self.inode: int | None = None

    def up(self) -> int:
        """Create the namespace and its holder; return the holder's pid."""
        _ip("netns", "add", self.netns)
        self.inode = os.stat(f"/run/netns/{self.netns}").st_ino
        ns = ["-n", self.netns]
        _ip(*ns, "link", "set", "lo", "up")
        _ip(*ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
        for address in self.ADDRESSES:
            _ip(*ns, "addr", "add", address, "dev", "eth0", "nodad")
        _ip(*ns, "link", "set", "eth0p", "up")
        _ip(*ns, "link", "set", "eth0", "up")
        for network in self.ROUTED:
            _ip(*ns, "route", "add", network, "via", self.GATEWAY)
        self.holder = self._start_holder()
        return self.holder

    def _start_holder(self) -> int:
        script = ("mount -t tmpfs -o mode=0755 tmpfs /run/wireguard && "
                  "exec sleep infinity")
        holder = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "--mount",
             "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if _comm(holder.pid) == "sleep":
                return holder.pid
            if holder.poll() is not None:
                break
            time.sleep(0.01)
        raise BenchError(f"{self.netns}: namespace holder did not start")

    def down(self) -> None:
        """Kill the namespace's processes (by pid), then remove its name."""
        if self.inode is not None:
            kill_all(pids_in_netns(self.inode))
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        self.inode = None


def kill_all(pids: list[int]) -> None:
    """Send TERM, then KILL to what is left after 2 s; reap our children."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            _reap(pids)
            pids = [pid for pid in pids if _alive(pid)]
            if not pids:
                return
            time.sleep(0.02)


def _reap(pids: list[int]) -> None:
    """Collect those of `pids` that are our own children (the holder)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise BenchError(f"ip {' '.join(args)}: {result.stderr.strip()}")
