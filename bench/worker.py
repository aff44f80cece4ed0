"""B1, B2 and B4: worker-1 of the three-node lab (netsetup.lab.Lab).

The master is converged once by netsetup; worker-1 is then converged from
nothing (B1), re-applied when already converged (B2) and asked for its
status (B4), each against a shell script doing the same with wg, ip and
nft, run in the same node the same way.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from bench import observe
from bench.inputs import Baseline, teardown_script, write_baseline
from bench.nodes import Node, lab_node
from bench.proc import BenchError, Sample, alternate
from bench.profile import PROFILE_RUNS, import_profile, phase_profile
from bench.report import Row, Section
from netsetup import keys, spec
from netsetup.lab import NODELIST_TEXT, Lab

WORKER = "worker-1"
HANDSHAKE_WAIT = 15.0


def ms(samples: list[Sample]) -> list[float]:
    return [sample.ms for sample in samples]


class WorkerBench:
    """The lab-based benchmarks; `profiles` collects their profile lines."""

    def __init__(self, lab: Lab, runs: int, scratch: Path, kernel: bool) -> None:
        self.lab = lab
        self.kernel = kernel
        self.runs = runs
        self.scratch = scratch
        self.profiles: list[str] = []
        self._node: Node | None = None  # once the lab is up
        self._baseline: Baseline | None = None

    @property
    def node(self) -> Node:
        if self._node is None:
            raise BenchError("the lab is not prepared")
        return self._node

    @property
    def baseline(self) -> Baseline:
        if self._baseline is None:
            raise BenchError("the baseline's inputs were not written")
        return self._baseline

    # -- preparing and resetting -------------------------------------------

    def prepare(self) -> None:
        """Converge the master; converge worker-1 once to learn its MTU."""
        self._node = lab_node(self.lab, WORKER)
        self.lab.netsetup("master", "apply")
        self.reset()
        self.apply()
        mtu = observe.configured(self.node).link["mtu"]
        cluster = spec.load(self.lab.node_dir(WORKER) / "cluster.toml")
        key = keys.read_private_key(
            self.node.state_dir / f"{cluster.interface}.key")
        self._baseline = write_baseline(self.scratch / WORKER, cluster,
                                        cluster.node(WORKER), key, mtu,
                                        self.kernel)

    def apply(self) -> None:
        self.node.run(self.node.netsetup("apply"))

    def reset(self) -> None:
        """Make worker-1 cold: no link, no table, no saved netsetup state."""
        self.node.run(self.node.netsetup("down"), check=False)
        self.node.sh(teardown_script(self.node.interface), check=False)
        self.node.settle()

    # -- B1 ------------------------------------------------------------------

    def cold_converge(self, section: Section) -> None:
        self._check_equivalent(section)
        apply = self.node.netsetup("apply")

        def ours() -> Sample:
            self.reset()
            return self.node.measure(apply).check("netsetup apply")

        def base() -> Sample:
            self.reset()
            return self.node.measure(["sh", "-c", self.baseline.converge()]
                                     ).check("baseline converge")

        mine, theirs = alternate(self.runs, ours, base)
        section.rows.append(Row("worker-1 of a 3-node lab", ms(mine),
                                ms(theirs), target=1.0, target_text="≤ 1.0"))
        self._profile("B1 cold `netsetup apply` (worker-1)", apply[1:],
                      self.reset)

    def _check_equivalent(self, section: Section) -> None:
        """Both sides must build the same device, link and table."""
        self.reset()
        self.apply()
        ours = observe.configured(self.node)
        self.reset()
        self.node.sh(self.baseline.converge())
        theirs = observe.configured(self.node)
        differences = ours.differences(theirs)
        if differences:
            section.failures.append("the baseline builds a different state "
                                    f"than netsetup: {', '.join(differences)}")
        else:
            section.notes.append(
                "the baseline builds the same state as netsetup (wg dump "
                "without counters, link MTU/up/addresses, `nft -s list "
                f"table`): MTU {ours.link['mtu']}, {len(ours.peers)} peer")

    # -- B2 ------------------------------------------------------------------

    def noop_reapply(self, section: Section) -> None:
        nodelist = self.lab.host_path(WORKER, self.lab.nodelist_path)
        self.reset()
        nodelist.write_bytes(NODELIST_TEXT)  # so the worker has one to keep
        self.apply()
        section.notes.append(self._wait_for_handshake())
        apply = self.node.netsetup("apply")
        self.node.sh(self.baseline.resync())  # warm-up of the baseline
        changes: list[dict[str, Any]] = []
        quiet = [0]

        def ours() -> Sample:
            before = self._footprint(nodelist)
            sample = self.node.measure(apply).check("netsetup apply (no-op)")
            after = self._footprint(nodelist)
            changes.append({key: (before[key], after[key]) for key in before
                            if before[key] != after[key]})
            quiet[0] += "nothing to do" in sample.stderr
            return sample

        def base() -> Sample:
            return self.node.measure(["sh", "-c", self.baseline.resync()]
                                     ).check("baseline resync")

        self.apply()  # warm-up of netsetup
        mine, theirs = alternate(self.runs, ours, base)
        zero = self._report_writes(section, changes, quiet[0])
        section.rows.append(Row("worker-1, converged", ms(mine), ms(theirs),
                                target=1.0, condition=zero,
                                target_text="≤ 1.0, zero writes"))
        self._profile("B2 no-op `netsetup apply` (worker-1)", apply[1:])

    def _wait_for_handshake(self) -> str:
        deadline = time.monotonic() + HANDSHAKE_WAIT
        while time.monotonic() < deadline:
            shakes = observe.handshakes(self.node)
            if shakes and all(shakes.values()):
                age = time.time() - min(shakes.values())
                return (f"{len(shakes)} peer(s) with a handshake {age:.0f} s "
                        "before the runs (so a new one would show)")
            time.sleep(0.1)
        raise BenchError(f"{WORKER}: no handshake with the master within "
                         f"{HANDSHAKE_WAIT:.0f} s")

    def _footprint(self, nodelist: Path) -> dict[str, Any]:
        """What a no-op apply must leave alone (and the run dir, for info)."""
        return {
            "node-list mtime": nodelist.stat().st_mtime_ns,
            "table handle": observe.table_handle(self.node),
            "latest handshakes": observe.handshakes(self.node),
            "state dir mtimes": observe.mtimes(self.node.state_dir),
            "run dir mtimes": observe.mtimes(self.node.run_dir),
        }

    def _report_writes(self, section: Section, changes: list[dict[str, Any]],
                       quiet: int) -> bool:
        runs = len(changes)
        checked = ("node-list mtime", "table handle", "latest handshakes",
                   "state dir mtimes")
        bad = {key: sum(key in change for change in changes) for key in checked}
        for key in checked:
            verdict = "unchanged" if not bad[key] else f"CHANGED in {bad[key]}"
            section.notes.append(f"{key}: {verdict} over {runs} runs")
        run_dir = [_changed_paths(change["run dir mtimes"])
                   for change in changes if "run dir mtimes" in change]
        if run_dir:
            paths = sorted({path for paths in run_dir for path in paths})
            section.notes.append(
                f"for information (not part of the target): netsetup's run "
                f"dir changed in {len(run_dir)} of {runs} runs: "
                + ", ".join(Path(p).name for p in paths))
        section.notes.append(f"`nothing to do` logged in {quiet} of {runs} runs")
        zero = not any(bad.values())
        if not zero:
            details = [f"{key}: {change[key]}" for change in changes
                       for key in checked if key in change][:3]
            section.failures.append("the no-op apply wrote: " + "; ".join(
                str(detail)[:300] for detail in details))
        return zero

    # -- B4 ------------------------------------------------------------------

    def status(self, section: Section) -> None:
        command = self.node.netsetup("status")
        codes: list[int] = []

        def ours() -> Sample:
            sample = self.node.measure(command)
            if sample.returncode not in (0, 1):
                sample.check("netsetup status")
            codes.append(sample.returncode)
            return sample

        def base() -> Sample:
            return self.node.measure(["sh", "-c", self.baseline.status()]
                                     ).check("baseline status")

        last = self.node.run(command, check=False)  # warm-up
        self.node.sh(self.baseline.status())
        mine, theirs = alternate(self.runs, ours, base)
        section.rows.append(Row("worker-1, converged", ms(mine), ms(theirs),
                                target=1.0, target_text="≤ 1.0"))
        healthy = codes.count(0)
        section.notes.append(f"`netsetup status` said healthy (exit 0) in "
                             f"{healthy} of {len(codes)} runs")
        if healthy != len(codes):
            section.notes.append("its last words: "
                                 + last.stdout.strip().splitlines()[-1])
        self._profile("B4 `netsetup status` (worker-1)", command[1:])

    # -- profiles ------------------------------------------------------------

    def _profile(self, title: str, args: list[str],
                 reset: Callable[[], None] | None = None) -> None:
        imports = import_profile(self.node, args, runs=PROFILE_RUNS,
                                 reset=reset)
        phases = phase_profile(self.node, args,
                               self.scratch / "profile.out", reset=reset)
        self.profiles += [f"- {title}", f"  - -X importtime: {imports.line()}",
                          f"  - cProfile (ms, cumulative): {phases}"]


def _changed_paths(pair: tuple[dict[str, int], dict[str, int]]) -> list[str]:
    before, after = pair
    return [path for path in set(before) | set(after)
            if before.get(path) != after.get(path)]


def outsider(lab: Lab) -> Node:
    """The lab node outside the cluster: where start-up is measured."""
    return lab_node(lab, "outsider")
