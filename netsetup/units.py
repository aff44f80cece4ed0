"""systemd units that run netsetup at boot: render them, install them.

Two units do the work. ``netsetup-firewall.service`` loads the last applied
table before any network comes up, so a node is never open at boot;
``netsetup.service`` runs ``apply`` once the network is online and retries
until it succeeds. ``netsetup-watch.path`` (optional) re-applies the cluster
file when it changes, through ``netsetup-reload.service``.
``netsetup-keywatch.service`` follows key rotations on every node, and
``netsetup-rekey.timer`` starts them on the master.

The units are Jinja templates in ``netsetup.templates`` (``systemd/``); the
only inputs are the path of the ``netsetup`` executable and of the cluster
file. Installing never enables or starts anything: that is the
administrator's call.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

from netsetup.errors import UnitError

log = logging.getLogger(__name__)

FIREWALL_UNIT = "netsetup-firewall.service"
APPLY_UNIT = "netsetup.service"
WATCH_UNIT = "netsetup-watch.path"
RELOAD_UNIT = "netsetup-reload.service"
KEYWATCH_UNIT = "netsetup-keywatch.service"
REKEY_UNIT = "netsetup-rekey.service"
REKEY_TIMER = "netsetup-rekey.timer"
UNITS = (FIREWALL_UNIT, APPLY_UNIT, WATCH_UNIT, RELOAD_UNIT, KEYWATCH_UNIT,
         REKEY_UNIT, REKEY_TIMER)

# What every node enables. Beside these: the watch where wanted, the rekey
# timer on the master. The reload and rekey services have no [Install]
# section; the watch and the timer start them.
ENABLE = (FIREWALL_UNIT, APPLY_UNIT, KEYWATCH_UNIT)

DEFAULT_EXECUTABLE = "/usr/local/bin/netsetup"
# sd_booted(3): systemd creates this directory when it is PID 1.
SYSTEMD_RUNTIME_DIR = Path("/run/systemd/system")

# Command-line words systemd takes as they are; anything else is quoted.
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def render_units(executable: str, config: Path) -> dict[str, str]:
    """Return the text of every unit, by unit file name."""
    from importlib.resources import files

    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    _check_path("executable", executable)
    _check_path("cluster file", str(config))

    templates = str(files("netsetup.templates") / "systemd")
    env = Environment(loader=FileSystemLoader(templates),
                      undefined=StrictUndefined, keep_trailing_newline=True,
                      autoescape=False)
    env.filters["exec_arg"] = exec_arg
    env.filters["unit_path"] = unit_path

    return {
        unit: env.get_template(f"{unit}.j2").render(
            unit=unit, executable=executable, config=str(config))
        for unit in UNITS
    }


def install_units(target_dir: Path, executable: str, config: Path) -> list[Path]:
    """Write the units into target_dir; return the files that changed.

    Each file is replaced atomically with mode 0644; a file that already
    has the wanted text is not touched.
    """
    from netsetup.files import write_atomic

    wanted = render_units(executable, config)
    changes = plan_install(target_dir, wanted)
    if not changes:
        return []

    try:
        target_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        for path, data in changes:
            write_atomic(path, data, mode=0o644)
            log.info("%s: written", path)
    except OSError as exc:
        raise UnitError(f"cannot install units in {target_dir}: {exc}") from exc
    return [path for path, _ in changes]


def plan_install(target_dir: Path,
                 wanted: dict[str, str]) -> list[tuple[Path, bytes]]:
    """Return (path, content) for each unit whose file differs from wanted."""
    changes = []
    for unit, text in wanted.items():
        path = target_dir / unit
        data = text.encode()
        try:
            current = path.read_bytes()
        except FileNotFoundError:
            current = None
        except OSError as exc:
            raise UnitError(f"cannot read {path}: {exc}") from exc
        if current != data:
            changes.append((path, data))
    return changes


def systemd_running(runtime_dir: Path = SYSTEMD_RUNTIME_DIR) -> bool:
    """Return whether this machine was booted with systemd as PID 1."""
    return runtime_dir.is_dir()


def daemon_reload() -> None:
    """Make the running systemd read the unit files again."""
    try:
        result = subprocess.run(["systemctl", "daemon-reload"],
                                capture_output=True, text=True, check=False)
    except OSError as exc:
        raise UnitError(f"systemctl daemon-reload: {exc}") from exc
    if result.returncode != 0:
        message = result.stderr.strip() or f"exit status {result.returncode}"
        raise UnitError(f"systemctl daemon-reload: {message}")


def default_executable(
    which: Callable[[str], str | None] = shutil.which,
    argv0: str | None = None,
) -> str:
    """Return the absolute path of the netsetup being run, as units need it."""
    found = which("netsetup")
    if found is None:
        found = sys.argv[0] if argv0 is None else argv0
        return str(Path(found).resolve())
    return os.path.abspath(found)


def exec_arg(word: str) -> str:
    """Return word written so that systemd's ExecStart= reads it back as is."""
    # NOTE: specifiers (%n, %i, ...) are expanded in every word, quoted or
    # not, and C escapes inside double quotes; "$" is refused by _check_path.
    word = word.replace("%", "%%")
    if _PLAIN_WORD.fullmatch(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit_path(path: str) -> str:
    """Return path written for a path setting such as PathChanged=."""
    # Path settings take the rest of the line as it is, specifiers aside.
    return path.replace("%", "%%")


def _check_path(what: str, path: str) -> None:
    # A newline would start a new directive; "$" would be expanded as an
    # environment variable in ExecStart= and cannot be escaped in the
    # command's own path.
    if not os.path.isabs(path):
        raise UnitError(f"{what} {path!r}: systemd needs an absolute path")
    if any(ord(char) < 0x20 or char in "\x7f$" for char in path):
        raise UnitError(f"{what} {path!r}: control characters and '$' "
                        "cannot be written into a unit file")
