"""Where netsetup's time goes: import costs and a phase breakdown.

Two views of one command, from extra runs that are not part of the timed
medians:

- `python -X importtime` (median of PROFILE_RUNS runs): what each
  top-level package (pyroute2, click, nftables, jinja2, cryptography)
  costs to import, counting each package once where it is first imported,
  wherever that happens;
- cProfile (one run): cumulative time of netsetup's phases
  (load the context, compute the desired state, observe, apply). cProfile
  slows Python code down, so compare phases with each other, not with the
  medians.
"""

from __future__ import annotations

import pstats
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench.nodes import PYTHON, Node
from bench.proc import BenchError, median

PROFILE_RUNS = 3  # -X importtime runs per profiled command (median)
PACKAGES = ("pyroute2", "click", "nftables", "jinja2", "cryptography")
IMPORT_RE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)$")

# (label, file under netsetup/, function, label of the phase it is part of)
PHASES: tuple[tuple[str, str, str, str | None], ...] = (
    ("load_context", "engine.py", "load_context", None),
    ("spec.load", "spec.py", "load", "load_context"),
    ("select backend", "wireguard/__init__.py", "select", "load_context"),
    ("Nft()", "firewall.py", "__init__", "load_context"),
    ("desired", "engine.py", "desired", None),
    ("render", "firewall.py", "render", "desired"),
    ("public_key", "keys.py", "public_key", "desired"),
    ("observe", "engine.py", "observe_node", None),
    ("link.read", "link.py", "read", "observe"),
    ("device read", "wireguard/userspace.py", "read", "observe"),
    ("device read (kernel)", "wireguard/kernel.py", "read", "observe"),
    ("route_mtu", "link.py", "route_mtu", "observe"),
    ("Nft.read", "firewall.py", "read", "observe"),
    ("plan", "plan.py", "plan", None),
    ("execute", "apply.py", "execute", None),
    ("Nft.load", "firewall.py", "load", "execute"),
    ("wireguard-go start", "wireguard/userspace.py", "create", "execute"),
    ("device configure", "wireguard/userspace.py", "configure", "execute"),
    ("link create (kernel)", "wireguard/kernel.py", "create", "execute"),
    ("device configure (kernel)", "wireguard/kernel.py", "configure", "execute"),
    ("set_mtu", "link.py", "set_mtu", "execute"),
    ("add_address", "link.py", "add_address", "execute"),
    ("set_up", "link.py", "set_up", "execute"),
    ("write_atomic", "nodelist.py", "write_atomic", "execute"),
    ("status report", "status.py", "report", None),
    ("Nft.counters", "firewall.py", "counters", None),
)


# pstats' value per function: (calls, primitive calls, own s, cumulative s, callers)
StatEntry = tuple[int, int, float, float, object]


@dataclass(frozen=True)
class ImportLine:
    depth: int
    name: str
    cumulative_ms: float


def parse_importtime(stderr: str) -> list[ImportLine]:
    """Parse `-X importtime` output (children come before their parent)."""
    lines = []
    for text in stderr.splitlines():
        match = IMPORT_RE.match(text)
        if match:
            depth = len(match.group(3)) // 2
            lines.append(ImportLine(depth, match.group(4),
                                    int(match.group(2)) / 1000.0))
    return lines


def package_costs(lines: list[ImportLine]) -> dict[str, float]:
    """Return ms per package in PACKAGES, counting only outermost imports."""
    parents = _parents(lines)
    costs = {}
    for package in PACKAGES:
        def ours(i: int) -> bool:
            name = lines[i].name
            return name == package or name.startswith(package + ".")

        total = 0.0
        for index in range(len(lines)):
            if ours(index) and not any(ours(p) for p in _ancestors(index, parents)):
                total += lines[index].cumulative_ms
        costs[package] = total
    return costs


def all_imports(lines: list[ImportLine]) -> float:
    """Return the ms spent importing, from the outermost imports."""
    return sum(line.cumulative_ms for line in lines if line.depth == 0)


def _parents(lines: list[ImportLine]) -> list[int | None]:
    """Return each line's parent: the next line (below it) that is shallower."""
    parents: list[int | None] = [None] * len(lines)
    stack: list[int] = []
    for index in range(len(lines) - 1, -1, -1):
        while stack and lines[stack[-1]].depth >= lines[index].depth:
            stack.pop()
        parents[index] = stack[-1] if stack else None
        stack.append(index)
    return parents


def _ancestors(index: int, parents: list[int | None]) -> list[int]:
    found = []
    parent = parents[index]
    while parent is not None:
        found.append(parent)
        parent = parents[parent]
    return found


@dataclass(frozen=True)
class ImportProfile:
    wall_ms: float
    imports_ms: float
    packages: dict[str, float]

    def line(self) -> str:
        parts = ", ".join(
            f"{name} {ms:.1f}" if ms else f"{name} –"
            for name, ms in self.packages.items())
        return (f"wall {self.wall_ms:.0f} ms, all imports {self.imports_ms:.0f} "
                f"ms; top-level packages (ms): {parts}")


def import_profile(node: Node, args: list[str], runs: int = 1,
                   reset: Callable[[], None] | None = None) -> ImportProfile:
    """Run `python -X importtime -m netsetup ARGS`; median of `runs` runs."""
    samples = []
    profiles = []
    for _ in range(runs):
        if reset is not None:
            reset()
        sample = node.measure([PYTHON, "-X", "importtime", "-m", "netsetup",
                               *args])
        if sample.returncode not in (0, 1):
            sample.check("python -X importtime -m netsetup " + " ".join(args))
        lines = parse_importtime(sample.stderr)
        samples.append(sample.ms)
        profiles.append((all_imports(lines), package_costs(lines)))
    return ImportProfile(
        wall_ms=median(samples),
        imports_ms=median(total for total, _ in profiles),
        packages={name: median(costs[name] for _, costs in profiles)
                  for name in PACKAGES})


# `python -m cProfile` writes its file when the script returns, but
# netsetup's main() ends the process with os._exit (no interpreter
# teardown): write the profile just before that exit instead.
PROFILED = """
import cProfile, os, sys
output, sys.argv = sys.argv[1], ["netsetup", *sys.argv[2:]]
profile = cProfile.Profile()
exit_now = os._exit
def dump_then_exit(status):
    profile.disable()
    profile.dump_stats(output)
    exit_now(status)
os._exit = dump_then_exit
profile.enable()
from netsetup.cli import main
main()
"""


def phase_profile(node: Node, args: list[str], output: Path,
                  reset: Callable[[], None] | None = None) -> str:
    """Run netsetup ARGS under cProfile once; return its phase line."""
    if reset is not None:
        reset()
    output.unlink(missing_ok=True)
    sample = node.measure([PYTHON, "-c", PROFILED, str(output), *args])
    if not output.exists():
        last = " / ".join(sample.stderr.strip().splitlines()[-3:])
        raise BenchError(f"cProfile wrote no profile (exit {sample.returncode}): "
                         f"{last}")
    return format_phases(pstats.Stats(str(output)))


def format_phases(stats: pstats.Stats) -> str:
    """Return `total; imports; phase [sub-phases]; ...` in ms."""
    table = stats.stats  # type: ignore[attr-defined]
    groups: dict[str, tuple[float, list[str]]] = {}
    for label, file, function, parent in PHASES:
        ms = _cumulative(table, "netsetup/" + file, function)
        if ms is None:
            continue
        if parent in groups:
            groups[parent][1].append(f"{label} {ms:.0f}")
        else:  # a top phase, or one whose parent did not run
            groups[label] = (ms, [])
    parts = [f"{label} {ms:.0f}" + (f" [{', '.join(subs)}]" if subs else "")
             for label, (ms, subs) in groups.items()]
    imports = _cumulative(table, "<frozen importlib._bootstrap>", "_find_and_load")
    total = stats.total_tt * 1000  # type: ignore[attr-defined]
    return (f"total {total:.0f} ms, imports (all, incl. lazy) "
            f"{imports or 0:.0f}; " + "; ".join(parts))


def _cumulative(table: dict[tuple[str, int, str], StatEntry], file: str,
                function: str) -> float | None:
    """Return the cumulative ms of `function` in `file`, None if never called."""
    total = None
    for (filename, _, name), (_, _, _, cumulative, _) in table.items():
        if name == function and filename.endswith(file):
            total = (total or 0.0) + cumulative * 1000
    return total


def startup_lines(node: Node, runs: int) -> list[str]:
    """Return the start-up profile: `netsetup --help` under -X importtime."""
    floors = {}
    for code in ("pass", "import click"):
        node.measure([PYTHON, "-c", code])  # warm-up
        floors[code] = median(node.measure([PYTHON, "-c", code]).ms
                              for _ in range(runs))
    helped = import_profile(node, ["--help"], runs=runs)
    return [f"- start-up, `python -X importtime -m netsetup --help` (median "
            f"of {runs}): {helped.line()}",
            f"- for scale (same nsenter, median of {runs}): `python -c pass` "
            f"{floors['pass']:.0f} ms; `python -c 'import click'` "
            f"{floors['import click']:.0f} ms, the least any command line "
            "built on click costs per call"]
