"""Run one child process and measure it from the outside.

Wall time is `time.perf_counter()` around starting and reaping the child
(what `subprocess.run` does, with `os.wait4` in place of `wait` so the
child's resource usage comes back too). Output goes to temporary files,
not pipes: a daemon that inherits them, such as a detaching wireguard-go,
cannot then hold the measurement open.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import IO, Callable, Iterable


class BenchError(Exception):
    """A benchmark could not be carried out (not a slow result: a failure)."""


@dataclass(frozen=True)
class Sample:
    """One measured run of a command."""

    seconds: float
    max_rss_kib: int  # ru_maxrss of the child (nsenter execs the command)
    returncode: int
    stdout: str
    stderr: str

    @property
    def ms(self) -> float:
        return self.seconds * 1000.0

    def check(self, what: str) -> Sample:
        """Return self, or raise BenchError if the command failed."""
        if self.returncode != 0:
            detail = (self.stderr.strip() or self.stdout.strip())[-2000:]
            raise BenchError(f"{what} exited {self.returncode}: {detail}")
        return self


def measure(argv: list[str], env: dict[str, str],
            timeout: float = 600.0) -> Sample:
    """Run `argv`, wait for it, and return its wall time and rusage."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=err, env=env)
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            watchdog.cancel()
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        return Sample(seconds, usage.ru_maxrss, process.returncode,
                      _read(out), _read(err))


def _read(handle: IO[bytes]) -> str:
    handle.seek(0)
    return handle.read().decode(errors="replace")


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def median_ms(samples: Iterable[Sample]) -> float:
    return median(sample.ms for sample in samples)


def alternate(runs: int, ours: Callable[[], Sample],
              base: Callable[[], Sample]) -> tuple[list[Sample], list[Sample]]:
    """Call both `runs` times, swapping which goes first on every round."""
    mine: list[Sample] = []
    theirs: list[Sample] = []
    for index in range(runs):
        if index % 2 == 0:
            mine.append(ours())
            theirs.append(base())
        else:
            theirs.append(base())
            mine.append(ours())
    return mine, theirs
