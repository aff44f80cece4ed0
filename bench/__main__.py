"""Run the benchmarks: `.venv/bin/python -m bench [--quick]`, as root.

- B1 cold converge of a worker, B2 no-op re-apply (with a zero-writes
  check), B4 status: worker-1 of a three-node netsetup.lab.Lab;
- B3 the master with 10/100/1000 workers, B5 peak memory at the largest
  size: a namespace holding only the master;
- a start-up line (`python -X importtime -m netsetup --help`) and one
  profiled run per case.

Everything runs in namespaces made here (named nsb<pid>-*, files under
/run/netsetup-bench-<pid>) and removed at the end, also on Ctrl-C. Prints
the results and writes them to bench/results.md. Exit status: 0 if every
benchmark ran and every correctness check held, 1 otherwise (a slow
result never fails a run), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Callable

from bench.master import MasterBench
from bench.proc import BenchError
from bench.profile import startup_lines
from bench.report import RESULTS, Section, document, load_average
from bench.worker import WorkerBench, outsider
from netsetup.lab import Lab, LabError


class Mode:
    """Repetitions and sizes for one mode."""

    def __init__(self, quick: bool) -> None:
        self.name = "quick" if quick else "full"
        self.runs = 3 if quick else 9
        self.sizes = [10, 100] if quick else [10, 100, 1000]


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr,
          flush=True)


def attempt(section: Section, body: Callable[[Section], None],
            label: str = "") -> Section:
    """Run one benchmark; a failure is recorded in its section, not raised."""
    progress(f"{section.key}: {label or section.title}")
    try:
        body(section)
    except (BenchError, LabError, subprocess.TimeoutExpired, OSError) as exc:
        prefix = f"{label}: " if label else ""
        section.failures.append(f"{prefix}{type(exc).__name__}: {exc}")
    return section


def worker_sections(lab: Lab, mode: Mode, scratch: Path,
                    startup: list[str], profiles: list[str]) -> list[Section]:
    """B1, B2, B4 (and the start-up line) on the lab; the caller removes it."""
    bench = WorkerBench(lab, mode.runs, scratch)

    def prepare(_: Section) -> None:
        lab.up()
        startup.extend(startup_lines(outsider(lab), mode.runs))
        bench.prepare()

    setup = attempt(Section("B1, B2, B4", "building and preparing the "
                            "three-node lab", "", ""), prepare)
    if setup.failures:
        return [setup]
    sections = [
        attempt(Section("B1", "cold converge of one worker",
                        "`netsetup apply` on worker-1 from nothing (after "
                        "`netsetup down`)",
                        "`sh -c`: `nft -f` of netsetup's ruleset, `wireguard-go "
                        "IF` (detaches), `wg setconf`, `ip link set mtu`, "
                        "`ip addr add`, `ip link set up`"),
                bench.cold_converge),
        attempt(Section("B2", "no-op re-apply on a converged worker",
                        "`netsetup apply` on converged worker-1",
                        "`sh -c`: `wg syncconf IF conf` + `nft -f` of the "
                        "same ruleset"),
                bench.noop_reapply),
        attempt(Section("B4", "status of a converged worker",
                        "`netsetup status` on worker-1",
                        "`sh -c`: `wg show IF dump` + `nft list table inet "
                        "netsetup`"),
                bench.status),
    ]
    profiles += bench.profiles
    return sections


def master_sections(workdir: Path, netns: str, mode: Mode,
                    profiles: list[str]) -> list[Section]:
    """B3 and B5 on a namespace holding only the master."""
    bench = MasterBench(workdir, netns, mode.sizes, mode.runs)
    b3 = Section("B3", "the master with N workers, cold",
                 "`netsetup --config F apply --node master` from nothing",
                 "`sh -c`: `nft -f` of netsetup's ruleset for the master, "
                 "`wireguard-go IF` (detaches), `wg setconf` of the same N "
                 "peers, `ip link set mtu`, `ip addr add`, `ip link set up`")
    try:
        for size in mode.sizes:
            attempt(b3, partial(bench.scale, workers=size), f"{size} workers")
        bench.finish_scale(b3)
        b5 = attempt(Section(
            "B5", f"peak memory at {max(mode.sizes)} workers",
            "max RSS of a cold `netsetup apply` (the master, as in B3)",
            "max RSS of `wg setconf` of the same peers into a fresh "
            "wireguard-go (started beforehand, not counted)"),
            bench.memory)
    finally:
        bench.close()
    profiles += bench.profiles
    return [b3, b5]


def run(mode: Mode) -> tuple[str, bool]:
    """Run every benchmark; return the results document and overall success."""
    pid = os.getpid()
    workdir = Path(f"/run/netsetup-bench-{pid}")
    prefix = f"nsb{pid}"
    started, clock = time.time(), time.perf_counter()
    load_before = load_average()
    startup: list[str] = []
    profiles: list[str] = []
    sections: list[Section] = []
    lab = Lab(workdir / "lab", prefix=prefix)
    try:
        try:
            sections += worker_sections(lab, mode, workdir / "scratch",
                                        startup, profiles)
        finally:
            progress("removing the lab")
            lab.down()
        sections += master_sections(workdir / "master", f"{prefix}-solo",
                                    mode, profiles)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    wall = time.perf_counter() - clock
    text = document(mode.name, mode.runs, started, wall,
                    (load_before, load_average()), startup, sections, profiles)
    return text, not any(section.failures for section in sections)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the clean-ups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 runs per case and sizes up to 100 (for CI)")
    parser.add_argument("--output", type=Path, default=RESULTS,
                        help=f"where to write the results (default {RESULTS})")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("python -m bench: run as root (it builds network namespaces)",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    # As `pip install` does: otherwise, with PYTHONDONTWRITEBYTECODE set
    # where the tree was edited, each run would compile netsetup again.
    import netsetup

    compileall.compile_dir(Path(netsetup.__file__).parent, quiet=1)
    text, ok = run(Mode(args.quick))
    args.output.write_text(text)
    print(text)
    progress(f"wrote {args.output}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
