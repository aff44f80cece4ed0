"""The CLI ends its process with os._exit: output must still arrive whole
and the exit status must be the command's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from netsetup.cli import cli, exit_status


def netsetup(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netsetup", *args],
                          capture_output=True, text=True)


def test_buffered_output_reaches_a_pipe() -> None:
    # stdout to a pipe is block-buffered: without a flush before os._exit
    # the help text (a few kB) would be lost.
    result = netsetup("--help")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Usage: ")
    assert len(result.stdout) > 1000
    listed = sorted(name for name, command in cli.commands.items()
                    if not command.hidden)
    assert lines[-1].split()[0] == listed[-1]  # the whole list arrived


def test_error_status_and_message(tmp_path: Path) -> None:
    result = netsetup("--config", str(tmp_path / "missing.toml"), "plan")
    assert result.returncode == 2
    assert result.stderr.startswith("netsetup: ")
    assert len(result.stderr.splitlines()) == 1


def test_usage_error_is_status_2() -> None:
    result = netsetup("no-such-command")
    assert result.returncode == 2
    assert "No such command" in result.stderr


def test_closed_stdout_is_not_success() -> None:
    result = subprocess.run(f"{sys.executable} -m netsetup --help >&-",
                            shell=True, capture_output=True, text=True)
    assert result.returncode != 0


@pytest.mark.parametrize("code, status", [(None, 0), (0, 0), (1, 1), (2, 2),
                                          ("bye", 1)])
def test_exit_status(code: object, status: int) -> None:
    assert exit_status(code) == status
