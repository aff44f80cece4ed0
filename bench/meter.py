"""Peak memory of one command, free of the launcher's own memory.

Run as a script: `python meter.py COMMAND...`. Prints the command's output,
then a last line `max_rss_kib=N returncode=N`.

Why not just `os.wait4` on a child of the benchmark: at `execve` the
kernel keeps the replaced image's high-water RSS in the process's
`ru_maxrss`, and a child forked (or vforked) from a 30 MiB Python process
starts as a 30 MiB image, so a 2 MiB `wg setconf` reads as 30 MiB. The
command must therefore be forked by a small process. Here `sh` forks it
in the background, prints its pid and exits; this process, a child
subreaper, inherits the orphan and reaps it with `os.wait4`, whose
`ru_maxrss` is then the command's own (the command's image and whatever
it execs, nsenter included; a daemon it leaves behind is not counted).
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_CHILD_SUBREAPER = 36
# The command must not keep the pipe open (nor a daemon it starts).
LAUNCH = '"$@" 4>&- & echo "$!" >&4'


def main(command: list[str]) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    read_end, write_end = os.pipe()
    shell = os.fork()
    if shell == 0:
        os.close(read_end)
        os.dup2(write_end, 4)
        os.set_inheritable(4, True)  # dup2 onto itself keeps close-on-exec
        os.execv("/bin/sh", ["sh", "-c", LAUNCH, "sh", *command])
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        pid = int(pipe.read().strip())
    os.waitpid(shell, 0)
    _, status, usage = os.wait4(pid, 0)  # ours now: we are its subreaper
    code = os.waitstatus_to_exitcode(status)
    sys.stdout.flush()
    print(f"max_rss_kib={usage.ru_maxrss} returncode={code}", flush=True)
    return 0


def parse(output: str) -> tuple[int, int]:
    """Return (max_rss_kib, returncode) from the meter's last line."""
    lines = output.strip().splitlines()
    fields = dict(item.split("=", 1) for item in (lines[-1].split() if lines else [])
                  if "=" in item)
    try:
        return int(fields["max_rss_kib"]), int(fields["returncode"])
    except (KeyError, ValueError):
        raise ValueError(f"no meter result in {output[-300:]!r}") from None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
