"""The pure parts of netsetup.rtnl: attribute and message framing."""

from __future__ import annotations

import struct

import pytest

from netsetup import rtnl


def test_attributes_round_trip_with_padding_and_nesting() -> None:
    inner = rtnl.attribute(rtnl.IFLA_INFO_KIND, b"wireguard\0")
    data = (rtnl.attribute(rtnl.IFLA_IFNAME, b"wg0\0")  # 8 bytes, padded to 8
            + rtnl.attribute(rtnl.IFLA_MTU, struct.pack("=I", 1420))
            # NLA_F_NESTED (0x8000) is set by some kernels on nested types
            + rtnl.attribute(rtnl.IFLA_LINKINFO | 0x8000, inner))
    assert len(data) % 4 == 0
    found = rtnl.attributes(data)
    assert found[rtnl.IFLA_IFNAME] == b"wg0\0"
    assert struct.unpack("=I", found[rtnl.IFLA_MTU]) == (1420,)
    assert rtnl.attributes(found[rtnl.IFLA_LINKINFO]) == {
        rtnl.IFLA_INFO_KIND: b"wireguard\0"}


def test_attributes_stop_at_a_length_past_the_end() -> None:
    good = rtnl.attribute(rtnl.IFLA_MTU, struct.pack("=I", 1500))
    bad = struct.pack("=HH", 200, rtnl.IFLA_IFNAME) + b"x" * 4
    assert rtnl.attributes(good + bad) == {rtnl.IFLA_MTU: struct.pack("=I", 1500)}


def test_messages_split_a_datagram_and_refuse_truncation() -> None:
    def message(kind: int, seq: int, payload: bytes) -> bytes:
        length = rtnl.NLMSGHDR.size + len(payload)
        pad = b"\0" * ((4 - length % 4) % 4)
        return rtnl.NLMSGHDR.pack(length, kind, 0, seq, 0) + payload + pad

    data = message(rtnl.RTM_NEWLINK, 7, b"abcde") + message(rtnl.NLMSG_DONE, 7, b"")
    assert list(rtnl.messages(data)) == [(rtnl.RTM_NEWLINK, 0, 7, b"abcde"),
                                         (rtnl.NLMSG_DONE, 0, 7, b"")]
    with pytest.raises(rtnl.NetlinkError):
        list(rtnl.messages(data + rtnl.NLMSGHDR.pack(64, 3, 0, 7, 0)))
