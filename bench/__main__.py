"""Run the benchmarks: `.venv/bin/python -m bench [--quick] [--vm]`, as root.

Without --vm, on this machine (WireGuard from the kernel if it has it, else
wireguard-go); with --vm, the same run inside the qemu guest of tests/vm,
whose stock Debian kernel has WireGuard (results in bench/results-kernel.md).

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
import tempfile
import time
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Callable

from bench.inputs import device_words
from bench.master import MasterBench
from bench.proc import BenchError
from bench.profile import startup_lines
from bench.report import (KERNEL_RESULTS, RESULTS, Section, document,
                          load_average)
from bench.worker import WorkerBench, outsider
from netsetup.lab import Lab, LabError
from netsetup.wireguard import kernel_available


VM_TIMEOUT = 3600  # s, for the whole guest run (emulated: slow)


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


def worker_sections(lab: Lab, mode: Mode, scratch: Path, kernel: bool,
                    startup: list[str], profiles: list[str]) -> list[Section]:
    """B1, B2, B4 (and the start-up line) on the lab; the caller removes it."""
    bench = WorkerBench(lab, mode.runs, scratch, kernel)

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
                        "`sh -c`: `nft -f` of netsetup's ruleset, "
                        f"{device_words(kernel)}, `wg setconf`, `ip link set "
                        "mtu`, `ip addr add`, `ip link set up`"),
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


def master_sections(workdir: Path, netns: str, mode: Mode, kernel: bool,
                    profiles: list[str]) -> list[Section]:
    """B3 and B5 on a namespace holding only the master."""
    bench = MasterBench(workdir, netns, mode.sizes, mode.runs, kernel)
    b3 = Section("B3", "the master with N workers, cold",
                 "`netsetup --config F apply --node master` from nothing",
                 "`sh -c`: `nft -f` of netsetup's ruleset for the master, "
                 f"{device_words(kernel)}, `wg setconf` of the same N "
                 "peers, `ip link set mtu`, `ip addr add`, `ip link set up`")
    try:
        for size in mode.sizes:
            attempt(b3, partial(bench.scale, workers=size), f"{size} workers")
        bench.finish_scale(b3)
        b5 = attempt(Section(
            "B5", f"peak memory at {max(mode.sizes)} workers",
            "max RSS of a cold `netsetup apply` (the master, as in B3)",
            "max RSS of `wg setconf` of the same peers into a fresh "
            + ("kernel device" if kernel else "wireguard-go")
            + " (created beforehand, not counted)"),
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
    # Where the kernel has WireGuard (the qemu tier), netsetup picks it, so
    # the baseline uses it too.
    kernel = kernel_available()
    lab = Lab(workdir / "lab", prefix=prefix)
    try:
        try:
            sections += worker_sections(lab, mode, workdir / "scratch", kernel,
                                        startup, profiles)
        finally:
            progress("removing the lab")
            lab.down()
        sections += master_sections(workdir / "master", f"{prefix}-solo",
                                    mode, kernel, profiles)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    wall = time.perf_counter() - clock
    text = document(mode.name, mode.runs, started, wall,
                    (load_before, load_average()), kernel, startup, sections,
                    profiles)
    return text, not any(section.failures for section in sections)


def run_in_vm(quick: bool, output: Path) -> int:
    """Run this benchmark inside the qemu guest; copy its results out."""
    vm_run = Path(__file__).resolve().parent.parent / "tests" / "vm" / "run"
    with tempfile.TemporaryDirectory(prefix="netsetup-bench-vm-") as out:
        command = [str(vm_run), "--timeout", str(VM_TIMEOUT), "--out", out,
                   "--cmd", ".venv/bin/python -m bench"
                   + (" --quick" if quick else "")
                   + ' --output "$VM_OUT/results.md"']
        progress("booting the qemu guest: " + " ".join(command[1:5]))
        code = subprocess.run(command, stdin=subprocess.DEVNULL).returncode
        produced = Path(out) / "results.md"
        if not produced.exists():
            progress(f"the guest wrote no results (exit status {code})")
            return code or 1
        shutil.copyfile(produced, output)
    progress(f"wrote {output}")
    return code


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the clean-ups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 runs per case and sizes up to 100 (for CI)")
    parser.add_argument("--vm", action="store_true",
                        help="run in the qemu guest of tests/vm, on the "
                        f"kernel's WireGuard (default output {KERNEL_RESULTS})")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"where to write the results (default {RESULTS})")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("python -m bench: run as root (it builds network namespaces)",
              file=sys.stderr)
        return 2
    if args.vm:
        return run_in_vm(args.quick, args.output or KERNEL_RESULTS)
    args.output = args.output or RESULTS
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
