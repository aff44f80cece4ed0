"""B3 and B5: the master alone in a namespace, with N generated workers.

For each N a cluster file with N workers (fresh X25519 keys, LAN addresses
from the documentation ranges, VPN addresses in 10.77.0.0/16) is written,
and the master is converged from nothing by netsetup and by a shell
script (wireguard-go or, where the kernel has WireGuard, `ip link add`;
`wg setconf` of the same N peers, ip, `nft -f` of netsetup's own ruleset). The workers do not exist: only the master's
configuration work is measured. Their LAN addresses (and the router's)
get permanent neighbour entries, as if they answered ARP/ND: the master
sends a handshake to every peer as soon as it knows it, and sends to
addresses that never resolve make wireguard-go's configuration slow
down badly with N (see the report). B5 compares the peak memory of
netsetup's cold apply at the largest N with that of `wg setconf` alone.
"""

from __future__ import annotations

import ipaddress
import json
import resource
from pathlib import Path

from bench import observe
from bench.inputs import (Baseline, big_cluster, teardown_script,
                          worker_lan_address, write_baseline)
from bench.nodes import Node, Solo, clean_env
from bench.proc import BenchError, Sample, alternate
from bench.profile import PROFILE_RUNS, import_profile, phase_profile
from bench.report import Row, Section
from netsetup import spec

TARGET_SIZE = 1000
TARGET_RATIO = 1.5
WIREGUARD_OVERHEAD = 80  # wg-quick's MTU rule: the route's MTU minus 80
NEIGHBOUR_MAC = "02:00:00:00:00:01"  # locally administered; frames go nowhere


class MasterBench:
    """Builds its own namespace; call close() to remove it."""

    def __init__(self, workdir: Path, netns: str, sizes: list[int],
                 runs: int, kernel: bool) -> None:
        self.workdir = workdir
        self.kernel = kernel
        self.solo = Solo(netns)
        self.sizes = sizes
        self.runs = runs
        self.holder: int | None = None
        self.rules: dict[int, int] = {}
        self.elements: dict[int, dict[str, int]] = {}
        self.rss: dict[str, list[float]] = {"netsetup": [], "wg setconf": []}
        self.profiles: list[str] = []

    def close(self) -> None:
        self.solo.down()

    # -- one size ----------------------------------------------------------

    def _node(self, workers: int) -> tuple[Node, Baseline]:
        """Write the cluster file, key and baseline files for `workers`."""
        if self.holder is None:
            self.holder = self.solo.up()
        base = self.workdir / f"n{workers}"
        state, run = base / "etc", base / "run"
        state.mkdir(parents=True, exist_ok=True)
        run.mkdir(parents=True, exist_ok=True)
        generated = big_cluster(workers, nodelist=base / "nodelist.txt")
        config = base / "cluster.toml"
        config.write_text(generated.text)
        cluster = spec.load(config)
        key = state / f"{cluster.interface}.key"
        key.write_text(generated.master_private_key + "\n")
        key.chmod(0o600)
        node = Node(name="master", netns=self.solo.netns, holder=self.holder,
                    env=clean_env({"NETSETUP_STATE_DIR": str(state),
                                   "NETSETUP_RUN_DIR": str(run)}),
                    state_dir=state, run_dir=run, interface=cluster.interface,
                    config=config)
        self._neighbours(node, workers, base / "neighbours.batch")
        baseline = write_baseline(base / "baseline", cluster, cluster.master,
                                  generated.master_private_key,
                                  _route_mtu(node, str(cluster.workers[0].address)),
                                  self.kernel)
        return node, baseline

    def _neighbours(self, node: Node, workers: int, batch: Path) -> None:
        """Make the router and every on-link worker address resolve."""
        on_link = [ipaddress.ip_interface(a).network for a in Solo.ADDRESSES]
        addresses = [Solo.GATEWAY] + [
            address for address in map(worker_lan_address, range(workers))
            if any(ipaddress.ip_address(address) in net for net in on_link)]
        batch.write_text("".join(
            f"neigh replace {address} lladdr {NEIGHBOUR_MAC} dev eth0 "
            "nud permanent\n" for address in addresses))
        node.run(["ip", "-batch", str(batch)])

    @staticmethod
    def _reset(node: Node) -> None:
        node.run(node.netsetup("down"), check=False)
        node.sh(teardown_script(node.interface), check=False)
        node.settle()

    def scale(self, section: Section, workers: int) -> None:
        """B3 for one N: cold apply vs the script, plus the rule count."""
        node, baseline = self._node(workers)
        apply = node.netsetup("apply")
        self._reset(node)
        warm_up = node.measure(apply)  # also what the state checks look at
        if warm_up.returncode == 0:
            self._count_rules(node, workers)
            self._check_equivalent(node, baseline, section, workers)
        else:
            section.failures.append(
                f"{workers} workers: `netsetup apply` exited "
                f"{warm_up.returncode} after {warm_up.seconds:.1f} s: "
                + _last_lines(warm_up.stderr))

        def ours() -> Sample:
            self._reset(node)
            return node.measure(apply).check(f"netsetup apply ({workers} workers)")

        def base() -> Sample:
            self._reset(node)
            return node.measure(["sh", "-c", baseline.converge()]).check(
                f"baseline converge ({workers} workers)")

        if warm_up.returncode == 0:
            mine, theirs = alternate(self.runs, ours, base)
        else:  # netsetup cannot: time the baseline alone
            mine, theirs = [], [base() for _ in range(self.runs)]
        self._add_row(section, workers, mine, theirs)
        if workers == max(self.sizes):
            self._memory(node, baseline, netsetup_works=warm_up.returncode == 0)
            if warm_up.returncode == 0:
                self._profile(node, workers, apply[1:])
        self._reset(node)

    def _add_row(self, section: Section, workers: int, mine: list[Sample],
                 theirs: list[Sample]) -> None:
        at_target = workers == TARGET_SIZE
        section.rows.append(Row(
            f"{workers} workers", [s.ms for s in mine], [s.ms for s in theirs],
            target=TARGET_RATIO if at_target else None,
            condition=(workers in self.rules
                       and len(set(self.rules.values())) == 1) if at_target
            else None,
            target_text="≤ 1.5, constant rules" if at_target else "–"))

    def _count_rules(self, node: Node, workers: int) -> None:
        self.rules[workers] = observe.rule_count(node)
        self.elements[workers] = observe.set_elements(node)

    def _check_equivalent(self, node: Node, baseline: Baseline,
                          section: Section, workers: int) -> None:
        ours = observe.configured(node)  # left by the warm-up apply
        self._reset(node)
        node.sh(baseline.converge())
        theirs = observe.configured(node)
        differences = ours.differences(theirs)
        if differences:
            section.failures.append(f"{workers} workers: the baseline builds a "
                                    f"different state: {', '.join(differences)}")
        elif len(ours.peers) != workers:
            section.failures.append(f"{workers} workers: the device has "
                                    f"{len(ours.peers)} peers")

    def _memory(self, node: Node, baseline: Baseline,
                netsetup_works: bool) -> None:
        """B5: peak RSS of a cold apply and of `wg setconf` alone."""
        for _ in range(self.runs):
            if netsetup_works:
                self._reset(node)
                self.rss["netsetup"].append(node.peak_rss_kib(
                    node.netsetup("apply"), "netsetup apply") / 1024)
            self._reset(node)
            node.sh(baseline.start_device())
            self.rss["wg setconf"].append(node.peak_rss_kib(
                baseline.setconf(), "wg setconf") / 1024)

    def _profile(self, node: Node, workers: int, args: list[str]) -> None:
        def reset() -> None:
            self._reset(node)

        imports = import_profile(node, args, runs=PROFILE_RUNS, reset=reset)
        phases = phase_profile(node, args, self.workdir / "profile.out",
                               reset=reset)
        self.profiles += [
            f"- B3 cold `netsetup apply` (master, {workers} workers)",
            f"  - -X importtime: {imports.line()}",
            f"  - cProfile (ms, cumulative): {phases}"]

    # -- the sections ------------------------------------------------------

    def finish_scale(self, section: Section) -> None:
        """Add the rule counts (and their constancy) to B3's notes."""
        counts = ", ".join(f"{n} workers → {c}" for n, c in self.rules.items())
        constant = len(set(self.rules.values())) <= 1
        section.notes.append(
            f"rules in table inet netsetup (lines with `# handle` inside "
            f"chains, `nft -a list table inet netsetup`): {counts or 'none'}"
            + (": the same for every size" if constant else ": NOT constant"))
        sets = "; ".join(
            f"{n}: " + ", ".join(f"{name} {size}" for name, size in sizes.items()
                                 if name.startswith("peer_endpoints"))
            for n, sizes in self.elements.items())
        section.notes.append(f"elements of the endpoint sets: {sets}")
        section.notes.append(
            "at every size where netsetup converged, the baseline built the "
            "same state (wg dump without counters, link, `nft -s list table`) "
            "unless a failure below says otherwise")
        section.notes.append(
            "the workers' LAN addresses resolve (permanent neighbour entries "
            "for the on-link ones and the router); the master's node-list "
            "path does not exist, so neither side rewrites a file")
        if TARGET_SIZE not in self.sizes:
            section.notes.append(f"the target is defined at {TARGET_SIZE} "
                                 "workers; this mode stops before it")
        if self.rules and not constant:
            section.failures.append(f"rule count varies with N: {counts}")

    def memory(self, section: Section) -> None:
        """B5: peak RSS at the largest N, from the runs above."""
        if not self.rss["wg setconf"]:
            raise BenchError("B3 at the largest size did not get that far")
        section.rows.append(Row(f"{max(self.sizes)} workers",
                                self.rss["netsetup"], self.rss["wg setconf"],
                                unit="MiB max RSS"))
        if not self.rss["netsetup"]:
            section.failures.append("netsetup apply does not converge at this "
                                    "size (see B3)")
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        section.notes.append(
            "ru_maxrss from os.wait4, taken by bench/meter.py run inside the "
            "node: `sh` forks the command and exits, the meter (a child "
            "subreaper) reaps it. A direct os.wait4 from this benchmark would "
            "read at least its own peak RSS (here "
            f"{own:.0f} MiB) for any command, because execve keeps the "
            "replaced image's high-water mark."
            + ("" if self.kernel else " The wireguard-go that netsetup starts "
               "outlives it and is not counted on either side"))


def _route_mtu(node: Node, destination: str) -> int:
    """Return the MTU wg-quick would pick: the route's link MTU minus 80."""
    (route,) = json.loads(node.run(["ip", "-j", "route", "get",
                                    destination]).stdout)
    (link,) = json.loads(node.run(["ip", "-j", "link", "show", "dev",
                                   route["dev"]]).stdout)
    return int(link["mtu"]) - WIREGUARD_OVERHEAD


def _last_lines(text: str, count: int = 2) -> str:
    return " / ".join(text.strip().splitlines()[-count:])
