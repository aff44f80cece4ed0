"""Tests for netsetup.nodelist: token rewriting and safe restore of the file."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from netsetup.nodelist import (
    FileChange,
    changed_tokens,
    is_rewritten,
    file_change,
    plan_file,
    restore,
    rewrite,
    save_original,
    saved_original,
    validate_mapping,
    write_atomic,
)

MAPPING = {
    "192.0.2.1": "10.8.0.1",
    "192.0.2.2": "10.8.0.2",
    "worker-1": "10.8.0.11",
    "Node-B.example.org": "10.8.0.12",
    "2001:db8::11": "fd00::11",
}


# --- examples ----------------------------------------------------------------

REPLACED = [
    ("crlf_is_kept", b"192.0.2.1\r\n192.0.2.2\r\n", b"10.8.0.1\r\n10.8.0.2\r\n"),
    ("tabs_are_kept", b"node\t192.0.2.1\t4\n", b"node\t10.8.0.1\t4\n"),
    ("trailing_spaces_are_kept", b"192.0.2.1   \n  ", b"10.8.0.1   \n  "),
    ("comment_token_is_replaced", b"# 192.0.2.1 old\n", b"# 10.8.0.1 old\n"),
    ("port_suffix_is_kept", b"192.0.2.1:5001\n", b"10.8.0.1:5001\n"),
    ("comma_suffix_is_kept", b"192.0.2.1,192.0.2.2\n", b"10.8.0.1,10.8.0.2\n"),
    ("semicolon_is_kept", b"192.0.2.1;worker-1;", b"10.8.0.1;10.8.0.11;"),
    ("equals_prefix_is_kept", b"host=worker-1\n", b"host=10.8.0.11\n"),
    ("quotes_are_kept", b"\"worker-1\" '192.0.2.1'", b"\"10.8.0.11\" '10.8.0.1'"),
    (
        "bracketed_ipv6_with_port_keeps_brackets",
        b"[2001:db8::11]:5001\n",
        b"[fd00::11]:5001\n",
    ),
    ("bracketed_ipv6_without_port", b"x=[2001:db8::11]\n", b"x=[fd00::11]\n"),
    ("bare_ipv6_is_replaced", b"2001:db8::11 up\n", b"fd00::11 up\n"),
    ("host_name_is_case_insensitive", b"WORKER-1 Worker-1\n", b"10.8.0.11 10.8.0.11\n"),
    ("fqdn_key_is_case_insensitive", b"node-b.EXAMPLE.org\n", b"10.8.0.12\n"),
    (
        "non_utf8_bytes_are_kept",
        b"\xff\xfe 192.0.2.1 \xe9\n",
        b"\xff\xfe 10.8.0.1 \xe9\n",
    ),
    ("host_name_with_port", b"worker-1:22", b"10.8.0.11:22"),
    ("whole_data_is_one_token", b"192.0.2.1", b"10.8.0.1"),
]

UNTOUCHED = [
    ("longer_address", b"192.0.2.11 192.0.2.10\n"),
    ("address_with_more_octets", b"192.0.2.1.5\n"),
    ("address_with_prefix", b"x192.0.2.1 0192.0.2.1\n"),
    ("longer_host_name", b"worker-10\n"),
    ("fully_qualified_name_of_short_key", b"worker-1.example.org\n"),
    ("hash_glued_to_token", b"#192.0.2.1\n"),
    ("non_utf8_byte_glued_to_token", b"\xe9192.0.2.1\n"),
    ("port_followed_by_junk", b"192.0.2.1:5001x 192.0.2.1:\n"),
    ("token_followed_by_equals", b"192.0.2.1=x\n"),
    ("bare_ipv6_followed_by_group", b"2001:db8::11:5 2001:db8::110\n"),
    ("ipv6_spelled_differently", b"2001:DB8::11 2001:0db8::11\n"),
    ("host_name_in_brackets", b"[worker-1]\n"),
    ("bracketed_ipv6_glued_to_text", b"x[2001:db8::11]\n"),
    ("empty_data", b""),
]


@pytest.mark.parametrize(
    ("data", "expected"),
    [pytest.param(data, expected, id=name) for name, data, expected in REPLACED],
)
def test_key_token_is_replaced_and_other_bytes_kept(
    data: bytes, expected: bytes
) -> None:
    assert rewrite(data, MAPPING) == expected


@pytest.mark.parametrize(
    "data", [pytest.param(data, id=name) for name, data in UNTOUCHED]
)
def test_token_that_is_not_a_whole_key_is_not_touched(data: bytes) -> None:
    assert rewrite(data, MAPPING) == data


def test_longer_address_is_not_touched() -> None:
    assert rewrite(b"192.0.2.11", {"192.0.2.1": "10.8.0.1"}) == b"192.0.2.11"


def test_hex_host_name_does_not_split_an_ipv6_address() -> None:
    mapping = {"cafe": "10.8.0.1"}
    assert rewrite(b"cafe:1::2 cafe:1:2:3:4:5:6:7", mapping) == (
        b"cafe:1::2 cafe:1:2:3:4:5:6:7"
    )
    assert rewrite(b"cafe:1 cafe", mapping) == b"10.8.0.1:1 10.8.0.1"


def test_ipv6_value_in_front_of_port_suffix_is_rejected() -> None:
    with pytest.raises(ValueError, match="port"):
        rewrite(b"192.0.2.1:5001", {"192.0.2.1": "fd00::1"})


def test_ipv6_value_for_bare_ipv4_token_is_accepted() -> None:
    assert rewrite(b"192.0.2.1 x", {"192.0.2.1": "fd00::1"}) == b"fd00::1 x"


def test_ipv4_value_for_bracketed_ipv6_keeps_brackets() -> None:
    data = b"[2001:db8::11]:5001"
    assert rewrite(data, {"2001:db8::11": "10.8.0.1"}) == b"[10.8.0.1]:5001"


def test_key_that_extends_another_key_is_matched_whole() -> None:
    mapping = {"2001:db8::1": "fd00::1", "2001:db8::1:5": "fd00::2"}
    assert rewrite(b"2001:db8::1:5 2001:db8::1", mapping) == b"fd00::2 fd00::1"


def test_empty_mapping_changes_nothing() -> None:
    assert rewrite(b"192.0.2.1 worker-1", {}) == b"192.0.2.1 worker-1"


def test_changed_tokens_reports_line_and_spelling() -> None:
    data = b"# nodes\r\nWORKER-1 192.0.2.1\n\n[2001:db8::11]:5001 192.0.2.11\n"
    assert changed_tokens(data, MAPPING) == [
        (2, "WORKER-1", "10.8.0.11"),
        (2, "192.0.2.1", "10.8.0.1"),
        (4, "2001:db8::11", "fd00::11"),
    ]


# --- mapping validation ------------------------------------------------------

BAD_MAPPINGS = [
    ("value_is_a_key", {"192.0.2.1": "10.8.0.1", "10.8.0.1": "10.8.0.2"}),
    ("value_is_its_own_key", {"192.0.2.1": "192.0.2.1"}),
    ("value_is_a_key_in_other_case", {"worker-1": "10.8.0.1", "WORKER-2": "worker-2"}),
    ("value_is_a_key_spelled_differently", {"2001:db8::1": "2001:0db8::1"}),
    ("keys_differ_only_in_case", {"worker-1": "10.8.0.1", "Worker-1": "10.8.0.2"}),
    ("key_with_space", {"worker 1": "10.8.0.1"}),
    ("key_with_tab", {"worker-1\t": "10.8.0.1"}),
    ("value_with_comma", {"worker-1": "10.8.0.1,"}),
    ("key_with_semicolon", {"a;b": "10.8.0.1"}),
    ("key_with_equals", {"a=b": "10.8.0.1"}),
    ("key_with_quote", {'"a"': "10.8.0.1"}),
    ("key_with_bracket", {"[2001:db8::1]": "10.8.0.1"}),
    ("empty_key", {"": "10.8.0.1"}),
    ("empty_value", {"worker-1": ""}),
    ("non_ascii_key", {"wörker": "10.8.0.1"}),
    ("colon_in_non_address", {"worker:1": "10.8.0.1"}),
    ("value_with_slash", {"worker-1": "10.8.0.0/24"}),
]


@pytest.mark.parametrize(
    "mapping", [pytest.param(mapping, id=name) for name, mapping in BAD_MAPPINGS]
)
def test_invalid_mapping_is_rejected(mapping: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        validate_mapping(mapping)
    with pytest.raises(ValueError):
        rewrite(b"x", mapping)


def test_valid_mapping_is_accepted() -> None:
    validate_mapping(MAPPING)
    validate_mapping({})


# --- properties --------------------------------------------------------------

V4_KEYS = ["192.0.2.1", "192.0.2.10", "192.0.2.2", "198.51.100.7"]
NAME_KEYS = ["worker-1", "worker-10", "node-b.example.org", "cafe", "Gpu_3"]
V6_KEYS = ["2001:db8::1", "2001:db8::11", "2001:db8::1:5", "::ffff:192.0.2.1"]
V4_VALUES = [f"10.8.0.{n}" for n in range(1, 30)]
V6_VALUES = [f"fd00::{n:x}" for n in range(1, 30)]
ALL_KEYS = V4_KEYS + NAME_KEYS + V6_KEYS

RIGHT_DELIMITERS = [b" ", b"\t", b"\n", b"\r\n", b"\r", b"\f", b"\v", b",", b";"]
RIGHT_DELIMITERS += [b'"', b"'"]
LEFT_DELIMITERS = RIGHT_DELIMITERS + [b"="]
# Filler can never form or touch a key: no letters, digits or . : _ - [ ]
FILLER = st.binary(max_size=6).map(
    lambda raw: bytes(b for b in raw if not (chr(b).isalnum() or chr(b) in ".:_-[]"))
)


@st.composite
def mappings(draw: st.DrawFn, injective: bool = False) -> dict[str, str]:
    """Draw a valid mapping; IPv4 and name keys get IPv4 values (port safe)."""
    keys = draw(st.lists(st.sampled_from(ALL_KEYS), min_size=1, unique=True))
    v4 = draw(st.permutations(V4_VALUES))
    v6 = draw(st.permutations(V6_VALUES))
    mapping: dict[str, str] = {}
    for index, key in enumerate(keys):
        if ":" in key and (injective or draw(st.booleans())):
            pool = v6
        else:
            pool = v4
        mapping[key] = pool[index] if injective else draw(st.sampled_from(pool))
    return mapping


def _random_case(draw: st.DrawFn, name: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return "".join(c.swapcase() if f else c for c, f in zip(name, flips))


@st.composite
def key_forms(
    draw: st.DrawFn, mapping: dict[str, str], exact: bool = False
) -> tuple[bytes, bytes]:
    """Draw one occurrence of a key in some form, and what it must become."""
    key = draw(st.sampled_from(sorted(mapping)))
    value = mapping[key]
    spelled = key if exact or key in V4_KEYS + V6_KEYS else _random_case(draw, key)
    port = draw(st.sampled_from(["", ":5001", ":0", ":65535"]))
    if ":" in key:
        if draw(st.booleans()):
            return spelled.encode(), value.encode()
        return f"[{spelled}]{port}".encode(), f"[{value}]{port}".encode()
    return f"{spelled}{port}".encode(), f"{value}{port}".encode()


def _near_misses(key: str) -> list[str]:
    misses = [key + "1", key + ".5", "x" + key, key + ":5001x", key + ".example.org"]
    misses += [key + "-", "_" + key, key + ":"]
    if ":" in key:
        misses += [key + ":5", key + ":abcd", "[" + key, key + "]"]
    else:
        misses += ["[" + key + "]"]
    return misses


unrelated_names = st.from_regex(
    r"[a-z][a-z0-9-]{0,12}(\.[a-z]{1,5}){0,2}", fullmatch=True
)
unrelated_addresses = st.ip_addresses().map(str)


@st.composite
def unrelated_tokens(draw: st.DrawFn, mapping: dict[str, str]) -> bytes:
    """Draw a token that is no key: random, or a near miss of a key."""
    key = draw(st.sampled_from(sorted(mapping)))
    token = draw(
        st.one_of(
            unrelated_names,
            unrelated_addresses,
            st.sampled_from(_near_misses(key)),
        )
    )
    lowered = {k.lower() for k in mapping}
    assume(token.lower() not in lowered)
    return token.encode()


@st.composite
def separators(draw: st.DrawFn) -> bytes:
    """Draw bytes that end a token on the left side and start one on the right."""
    return (
        draw(st.sampled_from(RIGHT_DELIMITERS))
        + draw(FILLER)
        + draw(st.sampled_from(LEFT_DELIMITERS))
    )


@st.composite
def documents(draw: st.DrawFn, mapping: dict[str, str]) -> tuple[bytes, bytes, int]:
    """Draw (data, expected rewrite, number of replaced tokens) built by parts."""
    head = b""
    if draw(st.booleans()):
        head = draw(FILLER) + draw(st.sampled_from(LEFT_DELIMITERS))
    data, expected, replaced = [head], [head], 0
    count = draw(st.integers(min_value=0, max_value=8))
    for index in range(count):
        if index:
            sep = draw(separators())
            data.append(sep)
            expected.append(sep)
        if draw(st.booleans()):
            old, new = draw(key_forms(mapping))
            replaced += 1
        else:
            old = new = draw(unrelated_tokens(mapping))
        data.append(old)
        expected.append(new)
    tail = b""
    if draw(st.booleans()):
        tail = draw(st.sampled_from(RIGHT_DELIMITERS)) + draw(FILLER)
    data.append(tail)
    expected.append(tail)
    return b"".join(data), b"".join(expected), replaced


@st.composite
def messy_documents(
    draw: st.DrawFn, mapping: dict[str, str], exact: bool = False
) -> bytes:
    """Draw arbitrary bytes interleaved with keys, delimiters and near misses."""
    pieces = st.one_of(
        st.binary(max_size=5),
        st.sampled_from(LEFT_DELIMITERS + [b"[", b"]", b":", b":5001", b"#"]),
        key_forms(mapping, exact).map(lambda pair: pair[0]),
        st.sampled_from(_near_misses(draw(st.sampled_from(sorted(mapping))))).map(
            str.encode
        ),
    )
    return b"".join(draw(st.lists(pieces, max_size=20)))


@given(st.data())
def test_bytes_outside_replaced_tokens_never_change(data: st.DataObject) -> None:
    mapping = data.draw(mappings())
    document, expected, replaced = data.draw(documents(mapping))
    assert rewrite(document, mapping) == expected
    assert len(changed_tokens(document, mapping)) == replaced


@given(st.data())
def test_unrelated_tokens_never_change(data: st.DataObject) -> None:
    mapping = data.draw(mappings())
    tokens = data.draw(st.lists(unrelated_tokens(mapping), max_size=8))
    seps = data.draw(st.lists(separators(), min_size=len(tokens), max_size=len(tokens)))
    document = b"".join(sep + token for sep, token in zip(seps, tokens))
    assert rewrite(document, mapping) == document


@given(st.binary())
def test_empty_mapping_is_identity(document: bytes) -> None:
    assert rewrite(document, {}) == document


@given(st.data())
def test_inverse_mapping_undoes_rewrite(data: st.DataObject) -> None:
    mapping = data.draw(mappings(injective=True))
    inverse = {value: key for key, value in mapping.items()}
    document = data.draw(messy_documents(mapping, exact=True))
    # Names spelled in another case come back in the key's spelling.
    assume(all(old in mapping for _, old, _ in changed_tokens(document, mapping)))
    assume(not changed_tokens(document, inverse))
    assert rewrite(rewrite(document, mapping), inverse) == document


@given(st.data())
def test_rewrite_is_idempotent(data: st.DataObject) -> None:
    mapping = data.draw(mappings())
    document = data.draw(messy_documents(mapping))
    once = rewrite(document, mapping)
    assert rewrite(once, mapping) == once


@settings(deadline=None, max_examples=50)
@given(st.data())
def test_restore_gives_back_the_original_bytes(data: st.DataObject) -> None:
    mapping = data.draw(mappings())
    original = data.draw(messy_documents(mapping))
    with tempfile.TemporaryDirectory() as tmp:
        path, state_dir = Path(tmp, "nodelist.txt"), Path(tmp, "state")
        path.write_bytes(original)
        change = plan_file(path, mapping)
        if change is not None:
            save_original(path, state_dir, change.old, change.new)
            write_atomic(path, change.new)
        assert restore(path, state_dir) == (
            "untouched" if change is None else "restored"
        )
        assert path.read_bytes() == original
        assert not is_rewritten(path, state_dir)


# --- files -------------------------------------------------------------------


def test_write_atomic_keeps_mode_and_owner(tmp_path: Path) -> None:
    path = tmp_path / "nodelist.txt"
    path.write_bytes(b"old\n")
    os.chown(path, 1234, 2345)
    os.chmod(path, 0o640)
    write_atomic(path, b"new\n")
    info = path.stat()
    assert path.read_bytes() == b"new\n"
    assert (info.st_uid, info.st_gid) == (1234, 2345)
    assert stat.S_IMODE(info.st_mode) == 0o640


def test_write_atomic_creates_missing_file_with_mode_0644(tmp_path: Path) -> None:
    path = tmp_path / "new.txt"
    write_atomic(path, b"data")
    assert path.read_bytes() == b"data"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_write_atomic_mode_argument_overrides_mode(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write_atomic(path, b"data", mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_atomic_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "nodelist.txt"
    path.write_bytes(b"old")
    write_atomic(path, b"new")
    write_atomic(path, b"newer")
    assert os.listdir(tmp_path) == ["nodelist.txt"]


def test_write_atomic_removes_temp_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "inside").write_bytes(b"")
    with pytest.raises(OSError):
        write_atomic(target, b"data")
    assert os.listdir(tmp_path) == ["busy"]


def test_write_atomic_refuses_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_bytes(b"old")
    link = tmp_path / "nodelist.txt"
    link.symlink_to(real)
    with pytest.raises(OSError):
        write_atomic(link, b"new")
    assert link.is_symlink() and real.read_bytes() == b"old"


def test_plan_file_returns_none_when_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "nodelist.txt"
    path.write_bytes(b"192.0.2.11 worker-10\n")
    assert plan_file(path, MAPPING) is None


def test_plan_file_returns_none_when_file_is_missing(tmp_path: Path) -> None:
    assert plan_file(tmp_path / "missing.txt", MAPPING) is None


def test_plan_file_returns_change_with_readable_diff(tmp_path: Path) -> None:
    path = tmp_path / "nodelist.txt"
    path.write_bytes(b"# cluster\r\nworker-1 4\r\nworker-10 4\r\n")
    change = plan_file(path, MAPPING)
    assert change == FileChange(
        path,
        b"# cluster\r\nworker-1 4\r\nworker-10 4\r\n",
        b"# cluster\r\n10.8.0.11 4\r\nworker-10 4\r\n",
    )
    assert change.diff_lines() == ["line 2: worker-1 4 -> 10.8.0.11 4"]


def test_second_save_original_does_not_overwrite_the_first(tmp_path: Path) -> None:
    path, state_dir = tmp_path / "nodelist.txt", tmp_path / "state"
    save_original(path, state_dir, b"true original", b"first rewrite")
    path.write_bytes(b"first rewrite")
    save_original(path, state_dir, b"first rewrite", b"second rewrite")
    path.write_bytes(b"second rewrite")
    assert restore(path, state_dir) == "restored"
    assert path.read_bytes() == b"true original"


def test_state_files_are_private_and_named_without_slashes(tmp_path: Path) -> None:
    path, state_dir = tmp_path / "nodelist.txt", tmp_path / "state"
    save_original(path, state_dir, b"orig", b"new")
    names = sorted(os.listdir(state_dir / "nodelist"))
    assert len(names) == 2
    assert names[0].endswith(".orig") and names[1].endswith(".written.sha256")
    for name in names:
        mode = (state_dir / "nodelist" / name).stat().st_mode
        assert stat.S_IMODE(mode) == 0o600


def test_is_rewritten_tracks_saved_original(tmp_path: Path) -> None:
    path, state_dir = tmp_path / "nodelist.txt", tmp_path / "state"
    assert not is_rewritten(path, state_dir)
    save_original(path, state_dir, b"orig", b"new")
    assert is_rewritten(path, state_dir)
    assert not is_rewritten(tmp_path / "other.txt", state_dir)


def test_restore_without_saved_original_is_untouched(tmp_path: Path) -> None:
    path = tmp_path / "nodelist.txt"
    path.write_bytes(b"mine")
    assert restore(path, tmp_path / "state") == "untouched"
    assert path.read_bytes() == b"mine"


def test_restore_writes_original_back_keeping_owner_and_mode(tmp_path: Path) -> None:
    path, state_dir = tmp_path / "nodelist.txt", tmp_path / "state"
    save_original(path, state_dir, b"192.0.2.1\r\n", b"10.8.0.1\r\n")
    path.write_bytes(b"10.8.0.1\r\n")
    os.chown(path, 1234, 1234)
    os.chmod(path, 0o664)
    assert restore(path, state_dir) == "restored"
    info = path.stat()
    assert path.read_bytes() == b"192.0.2.1\r\n"
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (1234, 1234, 0o664)
    assert not is_rewritten(path, state_dir)
    assert os.listdir(state_dir / "nodelist") == []


def test_restore_after_edit_keeps_edit_and_leaves_backup(tmp_path: Path) -> None:
    path, state_dir = tmp_path / "nodelist.txt", tmp_path / "state"
    save_original(path, state_dir, b"192.0.2.1\n", b"10.8.0.1\n")
    path.write_bytes(b"10.8.0.1\n10.8.0.9\n")
    assert restore(path, state_dir) == "edited-kept"
    assert path.read_bytes() == b"10.8.0.1\n10.8.0.9\n"
    assert (tmp_path / "nodelist.txt.netsetup-orig").read_bytes() == b"192.0.2.1\n"
    assert not is_rewritten(path, state_dir)


def test_restore_after_edit_does_not_overwrite_an_older_backup(tmp_path: Path) -> None:
    path, state_dir = tmp_path / "nodelist.txt", tmp_path / "state"
    (tmp_path / "nodelist.txt.netsetup-orig").write_bytes(b"older backup")
    save_original(path, state_dir, b"192.0.2.1\n", b"10.8.0.1\n")
    path.write_bytes(b"edited\n")
    assert restore(path, state_dir) == "edited-kept"
    assert (tmp_path / "nodelist.txt.netsetup-orig").read_bytes() == b"older backup"
    assert (tmp_path / "nodelist.txt.netsetup-orig.1").read_bytes() == b"192.0.2.1\n"


def test_restore_of_deleted_file_writes_original_back(tmp_path: Path) -> None:
    path, state_dir = tmp_path / "nodelist.txt", tmp_path / "state"
    save_original(path, state_dir, b"192.0.2.1\n", b"10.8.0.1\n")
    assert restore(path, state_dir) == "restored"
    assert path.read_bytes() == b"192.0.2.1\n"


def test_restore_when_file_still_holds_original_forgets_state(tmp_path: Path) -> None:
    # A crash between save_original and write_atomic leaves this state.
    path, state_dir = tmp_path / "nodelist.txt", tmp_path / "state"
    path.write_bytes(b"192.0.2.1\n")
    save_original(path, state_dir, b"192.0.2.1\n", b"10.8.0.1\n")
    assert restore(path, state_dir) == "restored"
    assert path.read_bytes() == b"192.0.2.1\n"
    assert not is_rewritten(path, state_dir)


def _apply(path: Path, state_dir: Path, mapping: dict[str, str]) -> None:
    """What plan and apply do with one node-list file."""
    current = path.read_bytes()
    change = file_change(path, current, mapping,
                         saved_original(path, state_dir, current))
    if change is not None:
        save_original(path, state_dir, change.old, change.new)
        path.write_bytes(change.new)


def test_a_changed_mapping_rewrites_the_original_not_the_rewrite(
    tmp_path: Path,
) -> None:
    path, state_dir = tmp_path / "nodelist.txt", tmp_path / "state"
    path.write_bytes(b"192.0.2.1 a\n192.0.2.2 b\n")
    _apply(path, state_dir, {"192.0.2.1": "10.8.0.1", "192.0.2.2": "10.8.0.2"})
    assert path.read_bytes() == b"10.8.0.1 a\n10.8.0.2 b\n"
    # a's VPN address changes, b leaves the cluster
    _apply(path, state_dir, {"192.0.2.1": "10.8.0.21"})
    assert path.read_bytes() == b"10.8.0.21 a\n192.0.2.2 b\n"
    assert restore(path, state_dir) == "restored"
    assert path.read_bytes() == b"192.0.2.1 a\n192.0.2.2 b\n"


def test_an_edited_rewrite_is_rewritten_as_it_stands(tmp_path: Path) -> None:
    path, state_dir = tmp_path / "nodelist.txt", tmp_path / "state"
    path.write_bytes(b"192.0.2.1 a\n")
    _apply(path, state_dir, {"192.0.2.1": "10.8.0.1"})
    path.write_bytes(b"10.8.0.1 a\n192.0.2.2 new\n")
    assert saved_original(path, state_dir, path.read_bytes()) is None
    _apply(path, state_dir, {"192.0.2.1": "10.8.0.1", "192.0.2.2": "10.8.0.2"})
    assert path.read_bytes() == b"10.8.0.1 a\n10.8.0.2 new\n"
    # The saved original lacks the new line: down keeps the file, and the
    # original goes beside it, rather than losing the edit.
    assert restore(path, state_dir) == "edited-kept"
    assert path.read_bytes() == b"10.8.0.1 a\n10.8.0.2 new\n"
    assert (tmp_path / "nodelist.txt.netsetup-orig").read_bytes() == b"192.0.2.1 a\n"


def test_a_crash_before_the_second_write_keeps_the_original_usable(
    tmp_path: Path,
) -> None:
    path, state_dir = tmp_path / "nodelist.txt", tmp_path / "state"
    path.write_bytes(b"192.0.2.1 a\n")
    _apply(path, state_dir, {"192.0.2.1": "10.8.0.1"})
    first = path.read_bytes()
    # Killed between recording the new write and making it:
    save_original(path, state_dir, first, b"10.8.0.21 a\n")
    assert saved_original(path, state_dir, first) == b"192.0.2.1 a\n"
    _apply(path, state_dir, {"192.0.2.1": "10.8.0.21"})
    assert path.read_bytes() == b"10.8.0.21 a\n"
    # Only our last two writes count as ours, not every earlier one.
    _apply(path, state_dir, {"192.0.2.1": "10.8.0.31"})
    assert saved_original(path, state_dir, first) is None
    assert restore(path, state_dir) == "restored"
    assert path.read_bytes() == b"192.0.2.1 a\n"


def test_an_original_put_back_by_hand_is_still_ours_to_rewrite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path, state_dir = tmp_path / "nodelist.txt", tmp_path / "state"
    path.write_bytes(b"192.0.2.1 a\n")
    _apply(path, state_dir, {"192.0.2.1": "10.8.0.1"})
    path.write_bytes(b"192.0.2.1 a\n")
    assert saved_original(path, state_dir, path.read_bytes()) == b"192.0.2.1 a\n"
    _apply(path, state_dir, {"192.0.2.1": "10.8.0.21"})
    assert path.read_bytes() == b"10.8.0.21 a\n"
    assert "edited" not in caplog.text
    assert restore(path, state_dir) == "restored"
    assert path.read_bytes() == b"192.0.2.1 a\n"
