"""A cluster of network namespaces on one machine: the demo and the tests.

Four nodes hang off one bridge (in a namespace of its own) with
documentation addresses: a master, two workers and an outsider. Each node
also gets a private mount namespace, held open by a `sleep` process, in
which:

- `/run/wireguard` is a fresh tmpfs, because wireguard-go's UAPI socket
  path is fixed and two nodes with the same interface name would collide;
- the node's own folder is bind-mounted on one shared path, so the cluster
  file (which must be the same on every node) can name one node-list path.

Commands run in a node with `nsenter` into both namespaces of its holder.
Nothing here touches the machine's own network namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

INTERFACE = "wg-mascot"
NETWORK = "10.77.0.0/24"
LISTEN_PORT = 51820
SERVICE_PORT = 5001
UNMANAGED_PORT = 8080
ECHO_PORT = 5003  # long-lived connections for the re-keying tests


@dataclass(frozen=True)
class LabNode:
    name: str
    role: str | None  # None: not in the cluster (the outsider)
    host: int  # last octet / group of its addresses

    @property
    def lan4(self) -> str:
        return f"192.0.2.{self.host}"

    @property
    def lan6(self) -> str:
        return f"2001:db8::{self.host}"

    @property
    def vpn(self) -> str:
        return f"10.77.0.{1 if self.role == 'master' else self.host}"


NODES = (
    LabNode("master", "master", 10),
    LabNode("worker-1", "worker", 11),
    LabNode("worker-2", "worker", 12),
    LabNode("outsider", None, 99),
)
CLUSTER_NODES = tuple(node for node in NODES if node.role is not None)
WORKERS = tuple(node for node in NODES if node.role == "worker")

NODELIST_TEXT = (
    b"# Mascot cluster nodes (lab copy)\r\n"
    b"192.0.2.11\tworker-1\t4 \r\n"
    b"192.0.2.12\tworker-2\t4\r\n"
    b"# 192.0.2.110 is an old node, not ours\r\n"
    b"192.0.2.110\told-node\t2\r\n"
)


class LabError(Exception):
    pass


class Lab:
    """A lab rooted at `workdir`; namespace names start with `prefix`."""

    def __init__(self, workdir: Path, prefix: str = "nslab",
                 backend: str | None = None) -> None:
        self.workdir = workdir
        self.prefix = prefix
        self.backend = backend
        self.shared = workdir / "node"  # each node sees its own folder here

    # -- names and paths -------------------------------------------------

    def netns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    @property
    def lan_netns(self) -> str:
        return f"{self.prefix}-lan"

    def node_dir(self, node: str) -> Path:
        return self.workdir / "nodes" / node

    @property
    def nodelist_path(self) -> Path:
        """The node-list path as every node sees it."""
        return self.shared / "mascot" / "nodelist.txt"

    def host_path(self, node: str, shared_path: Path) -> Path:
        """Translate a path under the shared mount to this machine's view."""
        return self.node_dir(node) / shared_path.relative_to(self.shared)

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("NETSETUP_")}
        env.pop("WG_PROCESS_FOREGROUND", None)
        env.update({
            "NETSETUP_CONFIG": str(self.shared / "cluster.toml"),
            "NETSETUP_STATE_DIR": str(self.shared / "etc"),
            "NETSETUP_RUN_DIR": str(self.shared / "run"),
            "NETSETUP_AUTHORIZED_KEYS": str(self.shared / "ssh" / "authorized_keys"),
        })
        return env

    # -- building and tearing down ---------------------------------------

    def up(self, cluster: bool = True) -> None:
        """Build namespaces, services and the cluster file (no netsetup yet).

        With `cluster` false, no node has a key or a cluster file yet: the
        starting point of `netsetup bootstrap`.
        """
        if (self.workdir / "pids.json").exists():
            raise LabError(f"{self.workdir}: a lab is already up; "
                           "run `netsetup lab down` first")
        for path in (Path("/run/wireguard"), Path("/run/sshd"), self.shared):
            path.mkdir(parents=True, exist_ok=True)
        try:
            self._network()
            self._holders()
            self._services()
            if cluster:
                self.write_cluster_file(self.keygen())
        except BaseException:
            self.down()
            raise

    def _network(self) -> None:
        _ip("netns", "add", self.lan_netns)
        _ip("-n", self.lan_netns, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.lan_netns, "link", "set", "br0", "up")
        for node in NODES:
            ns = self.netns(node.name)
            port = f"v-{node.name}"[:15]
            _ip("netns", "add", ns)
            _sysctl(ns, "net.ipv6.conf.default.accept_dad", "0")
            _ip("-n", self.lan_netns, "link", "add", port, "type", "veth",
                "peer", "name", "eth0", "netns", ns)
            _ip("-n", self.lan_netns, "link", "set", port, "master", "br0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{node.lan4}/24", "dev", "eth0")
            _ip("-n", ns, "addr", "add", f"{node.lan6}/64", "dev", "eth0",
                "nodad")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def _holders(self) -> None:
        pids = {}
        for node in NODES:
            node_dir = self.node_dir(node.name)
            for sub in ("etc", "run", "mascot", "ssh"):
                (node_dir / sub).mkdir(parents=True, exist_ok=True)
            script = (
                "mount -t tmpfs -o mode=0755 tmpfs /run/wireguard && "
                "mount -t tmpfs -o mode=0755 tmpfs /run/sshd && "
                f"mount --bind '{node_dir}' '{self.shared}' && "
                "exec sleep infinity"
            )
            holder = subprocess.Popen(
                ["ip", "netns", "exec", self.netns(node.name), "unshare",
                 "--mount", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL, start_new_session=True)
            pids[node.name] = holder.pid
            _wait_for(lambda: _comm(holder.pid) == "sleep", 5,
                      f"{node.name}: namespace holder did not start")
        (self.workdir / "pids.json").write_text(json.dumps(pids))

    def holder(self, node: str) -> int:
        pids = json.loads((self.workdir / "pids.json").read_text())
        return int(pids[node])

    def _services(self) -> None:
        master_key = self.node_dir("master") / "ssh" / "id_ed25519"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
              str(master_key)])
        for node in WORKERS:
            self.start_sshd(node.name, master_key.with_suffix(".pub"))
            self.spawn(node.name, [sys.executable, "-m", "netsetup.labtools",
                                   "serve", str(SERVICE_PORT),
                                   str(UNMANAGED_PORT), str(ECHO_PORT)])
        for node in WORKERS:
            _wait_for(lambda: self.probe(node.name, [
                f"127.0.0.1:{p}" for p in (22, SERVICE_PORT, UNMANAGED_PORT)
            ]) == [True, True, True], 10, f"{node.name}: services did not start")

    def start_sshd(self, node: str, authorized: Path | None) -> None:
        """Run a real sshd on port 22 that lets the master's key in.

        Started again (`authorized` None), it keeps its host key and
        authorized_keys, as after a reboot.
        """
        ssh_dir = self.node_dir(node) / "ssh"
        host_key = ssh_dir / "host_ed25519"
        if not host_key.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                  str(host_key)])
        if authorized is not None:
            shutil.copy(authorized, ssh_dir / "authorized_keys")
        config = ssh_dir / "sshd_config"
        config.write_text(
            f"Port 22\nListenAddress 0.0.0.0\nListenAddress ::\n"
            f"HostKey {host_key}\nPidFile {ssh_dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {ssh_dir / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "LogLevel ERROR\n")
        self.spawn(node, ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)])

    def keygen(self) -> dict[str, str]:
        """Create each cluster node's key on that node; return public keys."""
        return {
            node.name: self.netsetup(node.name, "keygen", "--interface",
                                     INTERFACE).stdout.strip()
            for node in CLUSTER_NODES
        }

    def write_cluster_file(self, public_keys: dict[str, str] | None,
                           nodes: tuple[str, ...] | None = None) -> str:
        """Write the same cluster file to `nodes` (default all); return it.

        Without public keys it is a draft, for `netsetup bootstrap`.
        """
        lines = [
            "[cluster]",
            'name = "lab"',
            f'interface = "{INTERFACE}"',
            f'network = "{NETWORK}"',
            f"listen_port = {LISTEN_PORT}",
            f"protected_ports = [22, {SERVICE_PORT}]",
            f'nodelist = "{self.nodelist_path}"',
        ]
        for node in CLUSTER_NODES:
            lines += [
                "", "[[nodes]]",
                f'name = "{node.name}"',
                f'role = "{node.role}"',
                f'address = "{node.lan4}"',
                f'vpn_address = "{node.vpn}"',
            ]
            if public_keys is not None:
                lines.append(f'public_key = "{public_keys[node.name]}"')
        text = "\n".join(lines) + "\n"
        for name in nodes or [node.name for node in CLUSTER_NODES]:
            (self.node_dir(name) / "cluster.toml").write_text(text)
        self.host_path("master", self.nodelist_path).write_bytes(NODELIST_TEXT)
        return text

    def down(self) -> None:
        """Kill every process in the lab's namespaces (by pid), remove them."""
        for name in [self.netns(node.name) for node in NODES] + [self.lan_netns]:
            _kill_netns_pids(name)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- running things in nodes -----------------------------------------

    def _nsenter(self, node: str) -> list[str]:
        return ["nsenter", "-t", str(self.holder(node)), "-n", "-m", "--"]

    def run(self, node: str, argv: list[str], check: bool = True,
            env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside `node` and wait for it."""
        result = subprocess.run(self._nsenter(node) + argv, text=True,
                                capture_output=True, env=env or self.env(),
                                timeout=timeout)
        if check and result.returncode != 0:
            raise LabError(f"{node}: {' '.join(argv)} exited "
                           f"{result.returncode}: {result.stderr.strip()}")
        return result

    def spawn(self, node: str, argv: list[str],
              log: str | None = None) -> subprocess.Popen[bytes]:
        """Start a long-running process inside `node`.

        Its output goes to `log` in the node's run folder, if named.
        """
        output = subprocess.DEVNULL if log is None else open(
            self.node_dir(node) / "run" / log, "ab")
        try:
            return subprocess.Popen(self._nsenter(node) + argv, env=self.env(),
                                    stdin=subprocess.DEVNULL, stdout=output,
                                    stderr=output, start_new_session=True)
        finally:
            if not isinstance(output, int):
                output.close()

    def netsetup(self, node: str, *args: str, check: bool = True,
                 env: dict[str, str] | None = None,
                 ) -> subprocess.CompletedProcess[str]:
        """Run the netsetup CLI inside `node` as that node."""
        argv = [sys.executable, "-m", "netsetup", *args]
        command = args[0] if args else ""
        if command in ("apply", "plan", "status", "down", "rekey", "bootstrap"):
            argv += ["--node", node]
            if self.backend is not None:
                argv += ["--backend", self.backend]
        return self.run(node, argv, check=check, env=env)

    def probe(self, node: str, targets: list[str],
              timeout: float = 1.0) -> list[bool]:
        """Try a TCP connection from `node` to each `host:port`."""
        result = self.run(node, [sys.executable, "-m", "netsetup.labtools",
                                 "probe", str(timeout), *targets])
        answer: list[bool] = json.loads(result.stdout)
        return answer

    def ssh(self, source: str, address: str, timeout: int = 5) -> bool:
        """Log in with a real ssh client from `source` using the master key."""
        key = self.shared / "ssh" / "id_ed25519"
        host = f"[{address}]" if ":" in address else address
        result = self.run(source, [
            "ssh", "-F", "/dev/null", "-i", str(key), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", f"ConnectTimeout={timeout}", "-o", "LogLevel=ERROR",
            f"root@{host}", "echo", "ssh-ok",
        ], check=False, timeout=timeout + 10)
        return result.returncode == 0 and "ssh-ok" in result.stdout


def _ip(*args: str) -> None:
    _run(["ip", *args])


def _sysctl(ns: str, key: str, value: str) -> None:
    _run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{key}={value}"])


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {result.stderr.strip()}")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _wait_for(condition: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise LabError(message)


def _kill_netns_pids(name: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        result = subprocess.run(["ip", "netns", "pids", name],
                                capture_output=True, text=True)
        pids = [int(pid) for pid in result.stdout.split()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# -- the demo ---------------------------------------------------------------

@dataclass(frozen=True)
class Probe:
    source: str
    path: str
    address: str
    port: int
    expected: bool


def matrix(target: str) -> list[Probe]:
    """Return the reachability probes for one worker and what each expects."""
    node = next(n for n in NODES if n.name == target)
    other = next(n for n in WORKERS if n.name != target)
    rows = [
        ("master", "VPN", node.vpn, True),
        ("master", "LAN IPv4", node.lan4, False),
        (other.name, "VPN", node.vpn, False),
        (other.name, "LAN IPv4", node.lan4, False),
        ("outsider", "LAN IPv4", node.lan4, False),
        ("outsider", "LAN IPv6", node.lan6, False),
        ("outsider", "VPN addr routed via LAN", node.vpn, False),
    ]
    probes = []
    for source, path, address, allowed in rows:
        host = f"[{address}]" if ":" in address else address
        for port in (22, SERVICE_PORT):
            probes.append(Probe(source, path, host, port, allowed))
        # An unmanaged port stays as open as it was, except over a VPN path
        # the tunnel itself does not carry (worker to worker).
        probes.append(Probe(source, path, host, UNMANAGED_PORT,
                            not (source == other.name and path == "VPN")))
    return probes


def route_outsider_to_vpn(lab: Lab) -> None:
    """Let the outsider try the workers' VPN addresses through the LAN."""
    for worker in WORKERS:
        lab.run("outsider", ["ip", "route", "replace", f"{worker.vpn}/32",
                             "via", worker.lan4])


def run_matrix(lab: Lab, target: str) -> list[tuple[Probe, bool]]:
    """Probe every row of `target`'s matrix; return (probe, reached) pairs."""
    probes = matrix(target)
    results: list[tuple[Probe, bool]] = []
    for source in dict.fromkeys(p.source for p in probes):
        mine = [p for p in probes if p.source == source]
        reached = lab.probe(source, [f"{p.address}:{p.port}" for p in mine])
        results += zip(mine, reached)
    return results


def demo(lab: Lab, echo: Callable[[str], None]) -> bool:
    """Build the lab, apply netsetup everywhere, print who reaches what."""
    echo("building the lab: master, worker-1, worker-2, outsider on 192.0.2.0/24")
    lab.up()
    route_outsider_to_vpn(lab)
    before = lab.host_path("master", lab.nodelist_path).read_bytes()
    for node in CLUSTER_NODES:
        result = lab.netsetup(node.name, "apply")
        echo(f"\n$ netsetup apply   # on {node.name}")
        echo(result.stderr.rstrip())
    for worker in WORKERS:
        # The first packet waits for the handshake; give it a moment.
        _wait_for(lambda: lab.probe("master", [f"{worker.vpn}:{SERVICE_PORT}"])
                  == [True], 10, f"master cannot reach {worker.name} over VPN")
    ok = True
    for worker in WORKERS:
        echo(f"\nwho reaches {worker.name} (✓ connected, · refused or dropped):")
        echo(f"  {'from':9} {'path':25} {'22':>3} {SERVICE_PORT:>5} "
             f"{UNMANAGED_PORT:>5}")
        results = run_matrix(lab, worker.name)
        for index in range(0, len(results), 3):
            row = results[index:index + 3]
            probe = row[0][0]
            cells = []
            for item, reached in row:
                mark = "✓" if reached else "·"
                if reached != item.expected:
                    mark += "!"
                    ok = False
                cells.append(mark)
            echo(f"  {probe.source:9} {probe.path:25} {cells[0]:>3} "
                 f"{cells[1]:>5} {cells[2]:>5}")
        login = lab.ssh("master", worker.vpn)
        ok = ok and login
        echo(f"  ssh root@{worker.vpn} from master: "
             f"{'logged in' if login else 'FAILED'}")
    after = lab.host_path("master", lab.nodelist_path).read_bytes()
    echo("\nmaster's nodelist.txt before:\n" + before.decode().replace("\r", ""))
    echo("and after netsetup apply:\n" + after.decode().replace("\r", ""))
    echo("all as expected" if ok else "UNEXPECTED results are marked with !")
    return ok
