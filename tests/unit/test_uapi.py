"""Tests for netsetup.wireguard.uapi: the text protocol of wireguard-go."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netsetup.errors import BackendError
from netsetup.wireguard import DeviceChange, DeviceState, PeerConfig, PeerState
from netsetup.wireguard.uapi import (
    b64_to_hex,
    encode_set,
    format_endpoint,
    hex_to_b64,
    parse_endpoint,
    parse_errno,
    parse_get,
)

PRIVATE_HEX = "a8" + "11" * 30 + "47"
PEER1_HEX = "e2" * 32
PEER2_HEX = "0f" * 31 + "f0"
STRAY_HEX = "77" * 32


def b64(hex_key: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_key)).decode()


# --- keys ------------------------------------------------------------------------


def test_b64_to_hex_gives_lowercase_hex_of_the_raw_key():
    assert b64_to_hex(b64(PRIVATE_HEX)) == PRIVATE_HEX
    assert b64_to_hex("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=") == "00" * 32


def test_hex_to_b64_accepts_uppercase_hex():
    assert hex_to_b64(PEER2_HEX.upper()) == b64(PEER2_HEX)


@given(st.binary(min_size=32, max_size=32))
def test_key_survives_b64_hex_round_trip(raw):
    key = base64.b64encode(raw).decode()

    hexed = b64_to_hex(key)

    assert len(hexed) == 64
    assert hex_to_b64(hexed) == key
    assert b64_to_hex(hex_to_b64(hexed)) == hexed


# --- endpoints ---------------------------------------------------------------------


@pytest.mark.parametrize("host, port, text", [
    ("192.0.2.10", 51820, "192.0.2.10:51820"),
    ("2001:db8::10", 51820, "[2001:db8::10]:51820"),
    ("::ffff:192.0.2.10", 1, "[::ffff:192.0.2.10]:1"),
])
def test_endpoint_formats_ipv6_in_brackets(host, port, text):
    assert format_endpoint(host, port) == text


@pytest.mark.parametrize("text, expected", [
    ("192.0.2.10:51820", ("192.0.2.10", 51820)),
    ("[2001:db8::10]:51820", ("2001:db8::10", 51820)),
    ("[2001:DB8:0:0::10]:51820", ("2001:db8::10", 51820)),
    ("[fe80::1%eth0]:51820", ("fe80::1", 51820)),
])
def test_endpoint_parses_to_normalised_address_and_port(text, expected):
    assert parse_endpoint(text) == expected


# --- encode_set ----------------------------------------------------------------------


def test_encode_set_writes_one_message_with_hex_keys():
    change = DeviceChange(
        private_key=b64(PRIVATE_HEX),
        listen_port=51820,
        set_peers=(
            PeerConfig(b64(PEER1_HEX), ("192.0.2.11", 51820),
                       ("10.77.0.11/32",), 25),
            PeerConfig(b64(PEER2_HEX), ("2001:db8::12", 51821),
                       ("10.77.0.12/32", "fd00::12/128"), 0),
        ),
        remove_peers=(b64(STRAY_HEX),),
    )

    message = encode_set(change)

    assert message == (
        "set=1\n"
        f"private_key={PRIVATE_HEX}\n"
        "listen_port=51820\n"
        f"public_key={STRAY_HEX}\n"
        "remove=true\n"
        f"public_key={PEER1_HEX}\n"
        "endpoint=192.0.2.11:51820\n"
        "persistent_keepalive_interval=25\n"
        "replace_allowed_ips=true\n"
        "allowed_ip=10.77.0.11/32\n"
        f"public_key={PEER2_HEX}\n"
        "endpoint=[2001:db8::12]:51821\n"
        "persistent_keepalive_interval=0\n"
        "replace_allowed_ips=true\n"
        "allowed_ip=10.77.0.12/32\n"
        "allowed_ip=fd00::12/128\n"
        "\n"
    ).encode()


def test_encode_set_leaves_out_what_does_not_change():
    change = DeviceChange(set_peers=(
        PeerConfig(b64(PEER1_HEX), None, ("10.77.0.11/32",), 25),))

    lines = encode_set(change).decode().split("\n")

    assert lines == [
        "set=1",
        f"public_key={PEER1_HEX}",
        "persistent_keepalive_interval=25",
        "replace_allowed_ips=true",
        "allowed_ip=10.77.0.11/32",
        "", "",
    ]
    assert not any(line.startswith(("private_key=", "listen_port=", "endpoint="))
                   for line in lines)


def test_encode_set_never_carries_a_base64_key():
    change = DeviceChange(private_key=b64(PRIVATE_HEX),
                          remove_peers=(b64(STRAY_HEX),))

    message = encode_set(change).decode()

    assert b64(PRIVATE_HEX) not in message
    assert b64(STRAY_HEX) not in message
    assert message.endswith("\n\n") and not message.endswith("\n\n\n")


# --- replies -------------------------------------------------------------------------

GET_REPLY = (
    f"private_key={PRIVATE_HEX}\n"
    "listen_port=51820\n"
    "fwmark=0\n"
    f"public_key={PEER1_HEX}\n"
    f"preshared_key={'00' * 32}\n"
    "protocol_version=1\n"
    "endpoint=[2001:db8::11]:51820\n"
    "last_handshake_time_sec=1700000000\n"
    "last_handshake_time_nsec=250000000\n"
    "tx_bytes=4096\n"
    "rx_bytes=8192\n"
    "persistent_keepalive_interval=25\n"
    "allowed_ip=10.77.0.12/32\n"
    "allowed_ip=10.77.0.11/24\n"
    f"public_key={PEER2_HEX}\n"
    f"preshared_key={'00' * 32}\n"
    "protocol_version=1\n"
    "last_handshake_time_sec=0\n"
    "last_handshake_time_nsec=0\n"
    "tx_bytes=0\n"
    "rx_bytes=0\n"
    "persistent_keepalive_interval=0\n"
    "allowed_ip=fd00:0:0::1/128\n"
    "errno=0\n"
    "\n"
)


def test_parse_get_reads_device_and_both_peers():
    state = parse_get(GET_REPLY)

    assert state == DeviceState(
        private_key=b64(PRIVATE_HEX),
        listen_port=51820,
        peers={
            b64(PEER1_HEX): PeerState(
                public_key=b64(PEER1_HEX),
                endpoint=("2001:db8::11", 51820),
                allowed_ips=("10.77.0.0/24", "10.77.0.12/32"),
                persistent_keepalive=25,
                last_handshake=1700000000.25,
                rx_bytes=8192,
                tx_bytes=4096,
            ),
            b64(PEER2_HEX): PeerState(
                public_key=b64(PEER2_HEX),
                endpoint=None,
                allowed_ips=("fd00::1/128",),
                persistent_keepalive=0,
                last_handshake=0.0,
            ),
        },
    )


def test_parsed_peer_compares_equal_to_the_config_that_set_it():
    wanted = PeerConfig(b64(PEER1_HEX), ("192.0.2.11", 51820),
                        ("10.77.0.11/32",), 25)
    reply = (
        f"private_key={PRIVATE_HEX}\nlisten_port=51820\n"
        f"public_key={PEER1_HEX}\nendpoint=192.0.2.11:51820\n"
        "last_handshake_time_sec=1700000001\nlast_handshake_time_nsec=5\n"
        "persistent_keepalive_interval=25\nallowed_ip=10.77.0.11/32\n"
        "errno=0\n\n")

    state = parse_get(reply)

    assert state.peers[wanted.public_key].config() == wanted


def test_parse_get_of_a_device_without_key_or_peers():
    state = parse_get("listen_port=0\nerrno=0\n\n")

    assert state == DeviceState(private_key=None, listen_port=0, peers={})


def test_parse_get_raises_on_nonzero_errno():
    with pytest.raises(BackendError, match="errno=19"):
        parse_get("errno=19\n\n")


def test_parse_get_raises_on_a_line_without_equals_sign():
    with pytest.raises(BackendError, match="malformed UAPI line"):
        parse_get("listen_port=51820\ngarbage\nerrno=0\n\n")


@pytest.mark.parametrize("reply, errno", [
    ("errno=0\n\n", 0),
    ("errno=22\n\n", 22),
    ("listen_port=51820\nerrno=0\n\n", 0),
])
def test_parse_errno_returns_the_number(reply, errno):
    assert parse_errno(reply) == errno


@pytest.mark.parametrize("reply", ["", "\n\n", "listen_port=1\n\n"])
def test_parse_errno_raises_when_the_reply_has_none(reply):
    with pytest.raises(BackendError, match="without errno"):
        parse_errno(reply)
