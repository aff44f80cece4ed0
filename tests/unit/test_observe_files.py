"""Reading node-list files: absent is fine, a symbolic link is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from netsetup.errors import NodeListError
from netsetup.observe import read_nodelist


def test_absent_node_list_reads_as_none(tmp_path: Path) -> None:
    assert read_nodelist(tmp_path / "nodelist.txt") is None


def test_node_list_bytes_are_read_as_they_are(tmp_path: Path) -> None:
    path = tmp_path / "nodelist.txt"
    path.write_bytes(b"192.0.2.11\tw1\r\n")
    assert read_nodelist(path) == b"192.0.2.11\tw1\r\n"


def test_symbolic_link_is_refused_before_any_change(tmp_path: Path) -> None:
    target = tmp_path / "real.txt"
    target.write_bytes(b"192.0.2.11\n")
    link = tmp_path / "nodelist.txt"
    link.symlink_to(target)
    with pytest.raises(NodeListError, match="symbolic link"):
        read_nodelist(link)
