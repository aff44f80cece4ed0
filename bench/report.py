"""Results: per-benchmark tables, the machine, and bench/results.md."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.proc import median

RESULTS = Path(__file__).with_name("results.md")
KERNEL_RESULTS = Path(__file__).with_name("results-kernel.md")  # --vm
TOOLS = ("wireguard-go", "wireguard-tools", "nftables", "iproute2")


@dataclass
class Row:
    """One case: netsetup's values and the baseline's, from the same run."""

    label: str
    ours: list[float]
    base: list[float]
    target: float | None = None  # the ratio must be at most this
    condition: bool | None = None  # an extra requirement (zero writes, ...)
    target_text: str = "–"
    unit: str = "ms"

    @property
    def ratio(self) -> float | None:
        """netsetup's median over the baseline's; None if a side has none."""
        if not self.ours or not self.base:
            return None
        return median(self.ours) / median(self.base)

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        ratio = self.ratio
        return (ratio is not None and ratio <= self.target
                and self.condition is not False)

    def ratio_text(self) -> str:
        return "–" if self.ratio is None else f"{self.ratio:.2f}"

    def met_text(self) -> str:
        return {None: "–", True: "yes", False: "**no**"}[self.met]


@dataclass
class Section:
    key: str
    title: str
    ours_label: str
    base_label: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"## {self.key}: {self.title}", "",
                 f"netsetup: {self.ours_label}  ",
                 f"baseline: {self.base_label}", ""]
        if self.rows:
            unit = self.rows[0].unit
            lines += [f"| case | netsetup {unit} | baseline {unit} | ratio "
                      "| target | met |",
                      "|---|---:|---:|---:|---|---|"]
            lines += [_row(row) for row in self.rows]
            lines.append("")
            lines.append("(median of the runs, min–max in brackets)")
            lines.append("")
            lines += [f"- runs, {row.label}: netsetup {_runs(row.ours)}; "
                      f"baseline {_runs(row.base)}" for row in self.rows]
        lines += [f"- {note}" for note in self.notes]
        lines += [f"- **FAILED**: {failure}" for failure in self.failures]
        return "\n".join(lines).rstrip() + "\n"


def _row(row: Row) -> str:
    return (f"| {row.label} | {_cell(row.ours)} | {_cell(row.base)} "
            f"| {row.ratio_text()} | {row.target_text} | {row.met_text()} |")


def _runs(values: list[float]) -> str:
    return ", ".join(f"{value:.0f}" for value in values) or "none (failed)"


def _cell(values: list[float]) -> str:
    if not values:
        return "failed"
    return f"{median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def machine() -> list[str]:
    """Return lines describing this machine and the tools' versions."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    versions = _debian_versions(TOOLS)
    return [
        f"- netsetup: commit {_commit()} (working tree as it was; "
        "uncommitted changes are not detected)",
        f"- kernel: `{platform.release()}` (uname -r)",
        f"- CPU: {cpu}, {os.cpu_count()} cores "
        f"({len(os.sched_getaffinity(0))} usable)",
        f"- Python {platform.python_version()}; "
        + ", ".join(f"{name} {version}" for name, version in versions.items()),
    ]


def _commit() -> str:
    """Return the repository's HEAD commit, read from .git (no subprocess)."""
    git = Path(__file__).resolve().parent.parent / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:12]
        ref = head[len("ref: "):]
        if (git / ref).exists():
            return (git / ref).read_text().strip()[:12]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0][:12]
    except OSError:
        pass
    return "unknown"


def _debian_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """Read installed versions from dpkg's database (no subprocess)."""
    found: dict[str, str] = {}
    try:
        text = Path("/var/lib/dpkg/status").read_text(errors="replace")
    except OSError:
        return found
    for stanza in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines()
                      if ": " in line and not line.startswith(" "))
        if fields.get("Package") in packages and "installed" in fields.get(
                "Status", ""):
            found[fields["Package"]] = fields.get("Version", "?")
    return found


def summary(sections: list[Section]) -> list[str]:
    """Return one table with every case's medians, ratio and target."""
    lines = ["## Summary", "",
             "| benchmark | case | netsetup | baseline | ratio | target | met |",
             "|---|---|---:|---:|---:|---|---|"]
    for section in sections:
        for row in section.rows:
            unit = row.unit.split()[0]
            ours = f"{median(row.ours):.1f} {unit}" if row.ours else "failed"
            base = f"{median(row.base):.1f} {unit}" if row.base else "failed"
            lines.append(f"| {section.key} | {row.label} | {ours} | {base} "
                         f"| {row.ratio_text()} | {row.target_text} "
                         f"| {row.met_text()} |")
        if section.failures:
            lines.append(f"| {section.key} | {len(section.failures)} "
                         "failure(s), see below | | | | | **no** |")
    return lines + ["", "(medians; MiB rows are peak memory)", ""]


def load_average() -> str:
    """Return the 1-minute load average (other work on the machine)."""
    return Path("/proc/loadavg").read_text().split()[0]


def document(mode: str, reps: int, started: float, wall: float,
             loads: tuple[str, str], kernel: bool, startup: list[str],
             sections: list[Section], profiles: list[str]) -> str:
    """Return the whole results.md text."""
    in_vm = os.environ.get("NETSETUP_VM") == "1"
    header = [
        "# netsetup benchmarks" + (" (qemu kernel tier)" if in_vm else ""), "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(started))}",
        *machine(),
        "- WireGuard: " + ("the kernel's (netsetup picks its kernel backend; "
                           "the baseline uses `ip link add`)" if kernel
                           else "wireguard-go (no WireGuard in this kernel)"),
        *(["- machine: the qemu guest of tests/vm, emulated (TCG, no KVM): "
           "its times are many times the host's, compare ratios only"]
          if in_vm else []),
        f"- mode: {mode} ({reps} runs per case, netsetup and baseline "
        "interleaved, one untimed warm-up each)",
        f"- wall time of this benchmark run: {wall:.0f} s; 1-minute load "
        f"average {loads[0]} at the start, {loads[1]} at the end",
        "- command: `.venv/bin/python -m bench" + (" --vm" if in_vm else "")
        + (" --quick`" if mode == "quick" else "`"),
        "", "Times are wall clock from process start to exit, measured from "
        "outside with `time.perf_counter()` around the `nsenter` command "
        "(both sides pay for nsenter). Targets are ratios netsetup/baseline; "
        "a benchmark never fails on a time. netsetup runs as installed "
        "(console script, no --backend: "
        + ("it finds WireGuard in the kernel" if kernel else
           "it finds no WireGuard in the kernel and starts wireguard-go")
        + "), byte-compiled first as `pip install` does, without the "
        "variables PYTHONDONTWRITEBYTECODE and PYTHONUNBUFFERED.", "",
    ]
    body = [*summary(sections), "## Start-up", "", *startup, ""]
    for section in sections:
        body.append(section.markdown())
    body += ["## Profile (one extra run each, not in the medians)", "",
             *profiles, ""]
    return "\n".join(header + body)
