"""The master's re-keying entry in authorized_keys: ours changes, nothing else."""

from __future__ import annotations

import tomllib
from pathlib import Path

from netsetup import sshkeys
from netsetup.settings import Settings
from netsetup.spec import parse

KEY = "ssh-ed25519 " + "A" * 68 + " netsetup-rekey"
CLUSTER = f"""
[cluster]
name = "mascot"
interface = "wg-mascot"
network = "10.77.0.0/24"
rekey_ssh_key = "{KEY}"

[[nodes]]
name = "master"
role = "master"
address = "192.0.2.10"
vpn_address = "10.77.0.1"
public_key = "{'B' * 43}="

[[nodes]]
name = "worker-1"
address = "192.0.2.11"
vpn_address = "10.77.0.11"
public_key = "{'C' * 43}="
"""
OTHER = b"ssh-ed25519 AAAAother admin@laptop\r\n# a comment\n"


def _entry() -> str:
    cluster = parse(tomllib.loads(CLUSTER), "cluster.toml")
    line = sshkeys.entry(cluster, Settings(state_dir=Path("/srv/ns")))
    assert line is not None
    return line


def test_entry_is_restricted_to_the_master_and_the_agent() -> None:
    line = _entry()
    assert line.startswith('from="10.77.0.1",restrict,command="')
    assert "NETSETUP_STATE_DIR=/srv/ns" in line and " agent" in line
    assert line.endswith(" netsetup-rekey:mascot")


def test_adding_keeps_every_other_byte() -> None:
    new = sshkeys.with_entry(OTHER, _entry(), "mascot")
    assert new.startswith(OTHER)
    assert new.count(b"\n") == 3


def test_adding_to_a_file_without_final_newline_adds_one() -> None:
    new = sshkeys.with_entry(b"ssh-ed25519 AAAAx me", _entry(), "mascot")
    assert new.startswith(b"ssh-ed25519 AAAAx me\n")


def test_updating_replaces_our_line_in_place() -> None:
    old = OTHER.replace(b"# a comment\n", b"") + b"old netsetup-rekey:mascot\n" \
        + b"# after\n"
    new = sshkeys.with_entry(old, _entry(), "mascot")
    lines = new.splitlines()
    assert lines[0] == OTHER.splitlines()[0] and lines[2] == b"# after"
    assert lines[1] == _entry().encode()


def test_removing_leaves_the_rest_as_it_was() -> None:
    with_ours = sshkeys.with_entry(OTHER, _entry(), "mascot")
    assert sshkeys.with_entry(with_ours, None, "mascot") == OTHER


def test_another_clusters_entry_is_not_ours() -> None:
    theirs = OTHER + b"x y z netsetup-rekey:other\n"
    assert sshkeys.with_entry(theirs, None, "mascot") == theirs
