"""Tests for netsetup.units: the systemd units, their text and their install.

None of these needs root or a running systemd: `systemd-analyze verify`
checks unit files offline, and systemctl is never run for real.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from netsetup.errors import UnitError
from netsetup.settings import Settings
from netsetup.units import (
    APPLY_UNIT,
    DEFAULT_EXECUTABLE,
    ENABLE,
    FIREWALL_UNIT,
    KEYWATCH_UNIT,
    REKEY_UNIT,
    RELOAD_UNIT,
    UNITS,
    WATCH_UNIT,
    default_executable,
    exec_arg,
    install_units,
    render_units,
    systemd_running,
)

REPO_UNITS = Path(__file__).resolve().parents[2] / "systemd"
CONFIG = Path("/etc/netsetup/cluster.toml")

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (Debian package systemd)")


def fake_netsetup(directory: Path) -> Path:
    """Create an executable that verify accepts as the ExecStart= binary."""
    directory.mkdir(parents=True, exist_ok=True)
    program = directory / "netsetup"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    return program


def write_units(directory: Path, units: dict[str, str]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in units.items():
        (directory / name).write_text(text)
        paths.append(directory / name)
    return paths


def analyze_verify(paths: list[Path], level: str = "info"
                   ) -> subprocess.CompletedProcess[str]:
    """Run `systemd-analyze verify` on unit files, without a running systemd.

    Files named by path are loaded from there, and their directories go in
    front of the unit search path, so the units find each other.
    --recursive-errors=no: only problems of the named units set the exit
    status, not those of the system units they pull in (sysinit.target,
    network-online.target, ...), which are the host's business.
    --man=no: do not look up Documentation= man pages.
    The log level is pinned so a caller's SYSTEMD_LOG_LEVEL=debug cannot
    flood stderr, and colour is off so lines compare as plain text.
    """
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": level, "SYSTEMD_LOG_COLOR": "0",
           "SYSTEMD_LOG_TARGET": "console"}
    return subprocess.run(
        ["systemd-analyze", "--no-pager", "verify", "--man=no",
         "--recursive-errors=no", *map(str, paths)],
        capture_output=True, text=True, env=env, timeout=120, check=False)


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Return section -> key -> every value given, in order, as systemd reads."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), "continuation lines are not parsed here"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"setting outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a setting: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def words(unit: dict[str, dict[str, list[str]]], section: str,
          key: str) -> list[str]:
    """Return the space-separated items of a list setting such as After=."""
    return [word for value in unit.get(section, {}).get(key, [])
            for word in value.split()]


def only(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit.get(section, {}).get(key, [])
    assert len(values) == 1, f"[{section}] {key}= given {len(values)} times"
    return values[0]


@pytest.fixture
def parsed() -> dict[str, dict[str, dict[str, list[str]]]]:
    return {name: parse_unit(text)
            for name, text in render_units(DEFAULT_EXECUTABLE, CONFIG).items()}


# --- systemd accepts them ----------------------------------------------------

@needs_analyze
def test_rendered_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    program = fake_netsetup(tmp_path / "bin")
    paths = write_units(tmp_path / "units", render_units(str(program), CONFIG))

    result = analyze_verify(paths)

    # Every complaint names the unit or the file it is about. Complaints
    # about system units that ours pull in are the host's, not ours (and
    # --recursive-errors=no keeps them out of the exit status).
    ours = [line for line in result.stderr.splitlines()
            if str(tmp_path) in line or any(unit in line for unit in UNITS)]
    assert ours == []
    assert result.returncode == 0, result.stderr


@needs_analyze
def test_verify_rejects_a_missing_executable(tmp_path: Path) -> None:
    # The check above is only worth something if verify looks at ExecStart=.
    paths = write_units(tmp_path / "units",
                        render_units(str(tmp_path / "nowhere"), CONFIG))

    result = analyze_verify(paths)

    assert result.returncode != 0
    assert "is not executable" in result.stderr


@needs_analyze
def test_spaces_and_percent_in_paths_reach_systemd_unchanged(
        tmp_path: Path) -> None:
    odd = tmp_path / "odd dir 100%"
    program = fake_netsetup(odd / "bin")
    config = odd / "my cluster.toml"
    paths = write_units(tmp_path / "units", render_units(str(program), config))

    # At debug level verify dumps each unit it loaded to stdout, with every
    # Exec*= command line as systemd parsed it.
    result = analyze_verify(paths, level="debug")

    prefix = "Command Line: "
    commands = sorted(shlex.split(line.strip()[len(prefix):])
                      for line in result.stdout.splitlines()
                      if line.strip().startswith(prefix) and "netsetup" in line)
    def command(*words: str) -> list[str]:
        return [str(program), "--config", str(config), *words]

    assert commands == sorted([command("apply"), command("apply"),
                               command("apply"), command("keywatch"),
                               command("rekey", "--if-due"),
                               command("restore-firewall")])
    assert f"PathChanged: {config}\n" in result.stdout
    assert result.returncode == 0


# --- boot order, read from the unit text -------------------------------------

def test_firewall_is_loaded_before_any_network(
        parsed: dict[str, dict[str, dict[str, list[str]]]]) -> None:
    firewall = parsed[FIREWALL_UNIT]

    assert only(firewall, "Unit", "DefaultDependencies") == "no"
    assert "network-pre.target" in words(firewall, "Unit", "Before")
    assert "network-pre.target" in words(firewall, "Unit", "Wants")
    assert "local-fs.target" in words(firewall, "Unit", "After")
    assert "shutdown.target" in words(firewall, "Unit", "Conflicts")
    assert "shutdown.target" in words(firewall, "Unit", "Before")
    assert words(firewall, "Install", "WantedBy") == ["sysinit.target"]
    assert only(firewall, "Service", "Type") == "oneshot"
    assert only(firewall, "Service", "RemainAfterExit") == "yes"
    assert only(firewall, "Service", "ExecStart").endswith(" restore-firewall")


def test_stopping_the_firewall_unit_leaves_the_table(
        parsed: dict[str, dict[str, dict[str, list[str]]]]) -> None:
    # Conflicts=shutdown.target stops the unit at every shutdown; a stop
    # command there would open the node for the rest of it.
    service = parsed[FIREWALL_UNIT]["Service"]

    assert not [key for key in service if key.startswith("ExecStop")]


def test_apply_waits_for_the_network_and_the_firewall(
        parsed: dict[str, dict[str, dict[str, list[str]]]]) -> None:
    apply = parsed[APPLY_UNIT]

    assert "network-online.target" in words(apply, "Unit", "After")
    assert "network-online.target" in words(apply, "Unit", "Wants")
    assert FIREWALL_UNIT in words(apply, "Unit", "After")
    assert FIREWALL_UNIT in words(apply, "Unit", "Requires")
    assert words(apply, "Install", "WantedBy") == ["multi-user.target"]
    assert only(apply, "Service", "ExecStart").endswith(" apply")
    assert only(apply, "Service", "ExecReload").endswith(" apply")


def test_apply_is_retried_without_giving_up(
        parsed: dict[str, dict[str, dict[str, list[str]]]]) -> None:
    apply = parsed[APPLY_UNIT]

    assert only(apply, "Service", "Restart") == "on-failure"
    assert only(apply, "Service", "RestartSec") == "15s"
    assert only(apply, "Unit", "StartLimitIntervalSec") == "0"
    assert only(apply, "Service", "Type") == "oneshot"
    assert only(apply, "Service", "RemainAfterExit") == "yes"


def test_watch_applies_the_cluster_file_it_watches(
        parsed: dict[str, dict[str, dict[str, list[str]]]]) -> None:
    watch, reload = parsed[WATCH_UNIT], parsed[RELOAD_UNIT]

    assert only(watch, "Path", "PathChanged") == str(CONFIG)
    assert only(watch, "Path", "Unit") == RELOAD_UNIT
    assert only(reload, "Service", "ExecStart") == (
        f"{DEFAULT_EXECUTABLE} --config {CONFIG} apply")
    assert APPLY_UNIT in words(reload, "Unit", "After")


def test_every_command_uses_the_given_cluster_file(
        parsed: dict[str, dict[str, dict[str, list[str]]]]) -> None:
    commands = [value for unit in parsed.values()
                for key, values in unit.get("Service", {}).items()
                if key.startswith("Exec") for value in values]

    assert len(commands) == 6
    for command in commands:
        assert command.startswith(f"{DEFAULT_EXECUTABLE} --config {CONFIG} ")


def test_only_the_boot_units_are_suggested_for_enabling(
        parsed: dict[str, dict[str, dict[str, list[str]]]]) -> None:
    assert set(ENABLE) == {FIREWALL_UNIT, APPLY_UNIT, KEYWATCH_UNIT}
    assert "Install" not in parsed[RELOAD_UNIT]
    assert "Install" not in parsed[REKEY_UNIT]  # only its timer starts it


# --- the copies in systemd/ ----------------------------------------------------

def test_committed_units_match_the_templates() -> None:
    wanted = render_units(DEFAULT_EXECUTABLE, Settings().config)
    committed = {path.name: path.read_bytes() for path in REPO_UNITS.iterdir()
                 if path.name != "README"}

    regenerate = (f"regenerate: netsetup --config {Settings().config} "
                  f"install-units --dir systemd --executable {DEFAULT_EXECUTABLE}")
    assert committed == {name: text.encode() for name, text in wanted.items()}, \
        regenerate


# --- writing the files ---------------------------------------------------------

def test_install_writes_every_unit_with_mode_0644(tmp_path: Path) -> None:
    target = tmp_path / "system"

    written = install_units(target, DEFAULT_EXECUTABLE, CONFIG)

    assert sorted(written) == sorted(target / unit for unit in UNITS)
    for unit, text in render_units(DEFAULT_EXECUTABLE, CONFIG).items():
        assert (target / unit).read_text() == text
        assert stat.S_IMODE((target / unit).stat().st_mode) == 0o644
    assert sorted(p.name for p in target.iterdir()) == sorted(UNITS)


def test_second_install_touches_nothing(tmp_path: Path) -> None:
    install_units(tmp_path, DEFAULT_EXECUTABLE, CONFIG)
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
              for p in tmp_path.iterdir()}

    written = install_units(tmp_path, DEFAULT_EXECUTABLE, CONFIG)

    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
             for p in tmp_path.iterdir()}
    assert written == []
    assert after == before


def test_install_rewrites_only_the_changed_file(tmp_path: Path) -> None:
    install_units(tmp_path, DEFAULT_EXECUTABLE, CONFIG)
    edited = tmp_path / APPLY_UNIT
    edited.write_text(edited.read_text().replace("15s", "1s"))
    edited.chmod(0o600)
    untouched = {p.name: p.stat().st_ino for p in tmp_path.iterdir()
                 if p != edited}

    written = install_units(tmp_path, DEFAULT_EXECUTABLE, CONFIG)

    assert written == [edited]
    assert edited.read_text() == render_units(
        DEFAULT_EXECUTABLE, CONFIG)[APPLY_UNIT]
    assert stat.S_IMODE(edited.stat().st_mode) == 0o644
    assert {p.name: p.stat().st_ino for p in tmp_path.iterdir()
            if p != edited} == untouched


def test_a_new_path_rewrites_every_unit_that_names_it(tmp_path: Path) -> None:
    install_units(tmp_path, DEFAULT_EXECUTABLE, CONFIG)

    written = install_units(tmp_path, "/opt/netsetup/bin/netsetup", CONFIG)

    # The watch names only the cluster file, so it stays as it was.
    assert sorted(p.name for p in written) == sorted(
        [FIREWALL_UNIT, APPLY_UNIT, RELOAD_UNIT, KEYWATCH_UNIT, REKEY_UNIT])


# --- paths systemd must read back as given -------------------------------------

@pytest.mark.parametrize(("word", "written"), [
    ("/usr/local/bin/netsetup", "/usr/local/bin/netsetup"),
    ("/opt/net setup/bin/netsetup", '"/opt/net setup/bin/netsetup"'),
    ("/srv/100%/cluster.toml", "/srv/100%%/cluster.toml"),
    ('/srv/a"b', '"/srv/a\\"b"'),
    ("/srv/a\\b", '"/srv/a\\\\b"'),
    ("/srv/it's", "\"/srv/it's\""),
    ("/srv/a;b", '"/srv/a;b"'),
])
def test_exec_arg_quotes_only_what_systemd_would_split(
        word: str, written: str) -> None:
    assert exec_arg(word) == written


@pytest.mark.parametrize(("executable", "config"), [
    ("netsetup", CONFIG),
    ("./bin/netsetup", CONFIG),
    (DEFAULT_EXECUTABLE, Path("cluster.toml")),
    (DEFAULT_EXECUTABLE, Path("/etc/netsetup/x\nExecStartPre=/bin/true")),
    ("/usr/local/bin/net$HOME", CONFIG),
    ("/usr/local/bin/net\tsetup", CONFIG),
])
def test_paths_a_unit_cannot_hold_are_refused(executable: str,
                                              config: Path) -> None:
    with pytest.raises(UnitError):
        render_units(executable, config)


# --- the environment -------------------------------------------------------------

def test_systemd_running_looks_for_its_runtime_directory(tmp_path: Path) -> None:
    assert not systemd_running(tmp_path / "system")
    (tmp_path / "system").mkdir()
    assert systemd_running(tmp_path / "system")


def test_default_executable_is_netsetup_on_path() -> None:
    found = default_executable(which=lambda name: f"/opt/bin/{name}",
                               argv0="/elsewhere/netsetup")
    assert found == "/opt/bin/netsetup"


def test_default_executable_falls_back_to_the_running_program(
        tmp_path: Path) -> None:
    program = fake_netsetup(tmp_path / "real")
    (tmp_path / "link").symlink_to(program)

    found = default_executable(which=lambda name: None,
                               argv0=str(tmp_path / "link"))

    assert found == str(program)


# --- the command -------------------------------------------------------------------

def test_cli_installs_units_and_reloads_systemd_only_when_it_runs(
        tmp_path: Path) -> None:
    # A systemctl that only records its arguments, first on PATH: the real
    # one is never run, on a systemd host either.
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    calls = tmp_path / "systemctl-calls"
    systemctl = fake_bin / "systemctl"
    systemctl.write_text(f'#!/bin/sh\necho "$@" >> {shlex.quote(str(calls))}\n')
    systemctl.chmod(0o755)
    program = fake_netsetup(tmp_path / "bin")
    target = tmp_path / "system"
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("NETSETUP_")}
    env.update(NETSETUP_STATE_DIR=str(tmp_path / "state"),
               NETSETUP_RUN_DIR=str(tmp_path / "run"),
               PATH=f"{fake_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    argv = [sys.executable, "-m", "netsetup", "--config", "cluster.toml",
            "install-units", "--dir", str(target), "--executable", str(program)]

    first = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=60, check=False)
    second = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60, check=False)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    # A relative --config is made absolute: systemd does not run in our cwd.
    assert {p.name: p.read_text() for p in target.iterdir()} == render_units(
        str(program), tmp_path / "cluster.toml")
    assert f"systemctl enable {FIREWALL_UNIT} {APPLY_UNIT}" in first.stdout
    reloads = calls.read_text() if calls.exists() else ""
    # Only the first run changed anything; the second has nothing to reload.
    assert reloads == ("daemon-reload\n" if systemd_running() else "")
