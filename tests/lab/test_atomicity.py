"""Replacing the table never opens the protected ports, not even briefly.

An outsider hammers a worker's 5001 with many short connection attempts
while the worker applies changed rules again and again. A control run shows
the same hammer does notice a gap when one exists.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from helpers import cluster_file, cluster_text
from netsetup.lab import Lab

HAMMER = r"""
import json, signal, socket, sys, time, threading
target, seconds = sys.argv[1], float(sys.argv[2])
host, port = target.rsplit(":", 1)
counts = {"attempts": 0, "through": 0}
lock = threading.Lock()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
def worker():
    end = time.monotonic() + seconds
    while time.monotonic() < end and not stop.is_set():
        s = socket.socket()
        s.settimeout(0.05)
        try:
            s.connect((host, int(port)))
            ok = True
        except OSError:
            ok = False
        finally:
            s.close()
        with lock:
            counts["attempts"] += 1
            counts["through"] += ok
threads = [threading.Thread(target=worker) for _ in range(16)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(counts))
"""


def _hammer(lab: Lab, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["nsenter", "-t", str(lab.holder("outsider")), "-n", "--",
         sys.executable, "-c", HAMMER, "192.0.2.11:5001", str(seconds)],
        stdout=subprocess.PIPE, text=True)


def _result(process: subprocess.Popen[str], stop: bool = False) -> dict[str, int]:
    """Return the hammer's counts; `stop` ends it first (SIGTERM)."""
    if stop:
        process.terminate()
    out, _ = process.communicate(timeout=60)
    counts: dict[str, int] = json.loads(out)
    return counts


def test_repeated_applies_that_change_rules_let_nothing_through(lab: Lab) -> None:
    original = cluster_text(lab, "worker-1")
    variant = original.replace(
        "[cluster]\n", '[cluster]\nadmin_sources = ["198.51.100.0/24"]\n', 1)
    hammer = _hammer(lab, 6.0)
    reloads = 0
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        with cluster_file(lab, ["worker-1"], variant):
            lab.netsetup("worker-1", "apply")
        lab.netsetup("worker-1", "apply")
        reloads += 2
    counts = _result(hammer)
    assert reloads >= 6
    assert counts["attempts"] > 500
    assert counts["through"] == 0, counts


def test_control_a_gap_between_delete_and_add_is_seen(lab: Lab) -> None:
    hammer = _hammer(lab, 3.0)
    time.sleep(0.5)
    ruleset = lab.run("worker-1", ["nft", "list", "table", "inet", "netsetup"])
    for _ in range(20):
        # Two transactions: the non-atomic way an nft script might do it.
        lab.run("worker-1", ["nft", "delete", "table", "inet", "netsetup"])
        time.sleep(0.05)
        subprocess.run(["nsenter", "-t", str(lab.holder("worker-1")), "-n",
                        "--", "nft", "-f", "-"], input=ruleset.stdout,
                       text=True, check=True)
    counts = _result(hammer)
    lab.netsetup("worker-1", "apply")
    assert counts["through"] > 0, counts
