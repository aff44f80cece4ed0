"""Numbered stop points between side effects, for crash-safety tests.

With NETSETUP_FAULT_STEP=N in the environment, the Nth point reached (or
the first one called N, if N is a name) kills the process with SIGKILL, as
a power cut or the OOM killer would. With
NETSETUP_FAULT_TRACE=FILE, each point reached appends its name to FILE, so
a test can count the points of a run. NETSETUP_FAULT_PAUSE=N sleeps one
second at point N, so a test can make two runs overlap. Unset, a point
costs a few dict lookups.

A process started by sshd (the re-keying agent) gets a clean environment,
so there the step can also come from the file `fault-step` in the run
directory named by NETSETUP_RUN_DIR; production, which leaves that
variable unset, never looks.
"""

from __future__ import annotations

import functools
import os
import signal
import time

_reached = 0


def point(name: str) -> None:
    """Mark a place where a crash must leave a node the next apply repairs."""
    global _reached
    _reached += 1
    trace, step, pause = _settings()
    if trace:
        with open(trace, "a") as handle:
            handle.write(f"{_reached} {name}\n")
    if step in (str(_reached), name):
        os.kill(os.getpid(), signal.SIGKILL)
    if pause == str(_reached):
        time.sleep(1)


@functools.cache
def _settings() -> tuple[str | None, str | None, str | None]:
    """Return the trace file, the step and the pause point, if any.

    Read once per process: a master with 1000 workers passes 1000 points.
    """
    step = os.environ.get("NETSETUP_FAULT_STEP")
    run_dir = os.environ.get("NETSETUP_RUN_DIR")
    if step is None and run_dir:
        try:
            with open(os.path.join(run_dir, "fault-step")) as handle:
                step = handle.read().strip()
        except FileNotFoundError:
            pass
    return (os.environ.get("NETSETUP_FAULT_TRACE"), step,
            os.environ.get("NETSETUP_FAULT_PAUSE"))
