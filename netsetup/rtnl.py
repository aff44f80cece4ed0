"""rtnetlink over a plain socket: read links, addresses and routes, set a
link's MTU and state, add and remove addresses; ask whether a
generic-netlink family exists.

Every apply and every status call observes the node, and most change
nothing. pyroute2 costs about 50 ms to import (its socket layer pulls in
asyncio, ssl and multiprocessing), several times what these few messages
take, so they are built here with `socket` and `struct`. pyroute2 stays
for what only the kernel backend needs: creating a link of kind
`wireguard` and configuring it over generic netlink (`netsetup.netlink`).

Each call is one request, answered by one message, an acknowledgement,
or a dump ending in NLMSG_DONE; route lookups, one per peer on a master,
go many to a datagram. Names follow the kernel's headers
(linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/genetlink.h).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from typing import Iterator, NamedTuple

NETLINK_ROUTE = 0
NETLINK_GENERIC = 16

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_DUMP = 0x300

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_GETROUTE = 26

IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1
IFLA_EXT_MASK = 29
RTEXT_FILTER_SKIP_STATS = 1 << 3

IFA_ADDRESS = 1
IFA_LOCAL = 2

RTA_DST = 1
RTA_OIF = 4
RTA_METRICS = 8
RTAX_MTU = 2

GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table,
#                                      protocol, scope, type, flags
GENLMSGHDR = struct.Struct("=BBH")  # cmd, version, reserved
RTATTR = struct.Struct("=HH")  # len, type
NLMSGERR = struct.Struct("=i")  # negative errno, then the request's header

RECV_SIZE = 1 << 16
# What one answer to a route lookup may take of the receive buffer, which
# counts the kernel's allocation, not the ~100-byte message: 832 bytes on
# this project's 6.18 kernel (measured), but older kernels answer in the
# request's NLMSG_GOODSIZE buffer, a page or up to 8 kB. An answer that
# does not fit is dropped, so count generously.
ANSWER_TRUESIZE = 16384


class NetlinkError(OSError):
    """The kernel refused a request; `errno` says why."""


class Link(NamedTuple):
    ifindex: int
    name: str
    kind: str | None  # IFLA_INFO_KIND, None for links without one (lo, eth)
    mtu: int
    flags: int


class Address(NamedTuple):
    ifindex: int  # of the link it is on
    family: int
    address: str  # IFA_ADDRESS, as `ip` prints it
    prefixlen: int


class Route(NamedTuple):
    oif: int | None
    mtu: int | None  # RTAX_MTU of the route's metrics, None if unset


def _align(length: int) -> int:
    return (length + 3) & ~3


def attribute(kind: int, payload: bytes) -> bytes:
    """Encode one rtattr, padded to the next 4-byte boundary."""
    length = RTATTR.size + len(payload)
    return RTATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def attribute_list(data: bytes, offset: int = 0) -> list[tuple[int, bytes]]:
    """Decode the rtattrs in `data` from `offset`: (type, payload) in order.

    The nested and byte-order flags (the top two bits) are masked off.
    """
    # NOTE: a master decodes a route per worker: this loop is kept tight.
    found: list[tuple[int, bytes]] = []
    end = len(data)
    header = RTATTR.size
    unpack = RTATTR.unpack_from
    while offset + header <= end:
        length, kind = unpack(data, offset)
        if length < header or offset + length > end:
            break
        found.append((kind & 0x3FFF, data[offset + header:offset + length]))
        offset += (length + 3) & ~3
    return found


def attributes(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Decode the rtattrs in `data` from `offset`: type -> payload.

    If a type repeats, the last one wins: use attribute_list for arrays.
    """
    return dict(attribute_list(data, offset))


def _u32(payload: bytes) -> int:
    value: int = struct.unpack_from("=I", payload)[0]
    return value


def _string(payload: bytes) -> str:
    return payload.split(b"\0", 1)[0].decode()


def messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """Split a datagram into (type, flags, seq, payload) messages."""
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _pid = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > len(data):
            raise NetlinkError(errno.EPROTO, "truncated netlink message")
        yield kind, flags, seq, data[offset + NLMSGHDR.size:offset + length]
        offset += _align(length)


class Socket:
    """One netlink socket; `request` sends a message and collects the answer."""

    def __init__(self, protocol: int = NETLINK_ROUTE) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, kind: int, flags: int, body: bytes) -> list[bytes]:
        """Send one request; return the payloads of its answer messages.

        A dump (NLM_F_DUMP) returns every part until NLMSG_DONE, a request
        with NLM_F_ACK returns [] once acknowledged, any other the one
        message the kernel answers with. An NLMSG_ERROR with a non-zero
        code raises NetlinkError.
        """
        self._seq += 1
        seq = self._seq
        self._sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(body), kind,
                                      flags | NLM_F_REQUEST, seq, 0) + body)
        answers: list[bytes] = []
        while True:
            data = self._sock.recv(RECV_SIZE)
            for reply, reply_flags, reply_seq, payload in messages(data):
                if reply_seq != seq:
                    continue  # an answer to an earlier, abandoned request
                if reply == NLMSG_DONE:
                    return answers
                if reply == NLMSG_ERROR:
                    (code,) = NLMSGERR.unpack_from(payload)
                    if code:
                        raise NetlinkError(-code, os.strerror(-code))
                    return answers  # an acknowledgement
                answers.append(payload)
                if not reply_flags & NLM_F_MULTI:
                    return answers

    def request_each(self, kind: int,
                     bodies: list[bytes]) -> list[bytes | NetlinkError]:
        """Send one request per body; return each one's answer, in order.

        For requests that the kernel answers with exactly one message
        (a route lookup): the payload, or the NetlinkError the request was
        refused with. The requests go many to a datagram, as many as
        the receive buffer holds answers for: an answer that does not fit
        would be dropped.
        """
        answers: dict[int, bytes | NetlinkError] = {}  # by index in bodies
        batch = max(1, self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                    // ANSWER_TRUESIZE)
        for start in range(0, len(bodies), batch):
            chunk = bodies[start:start + batch]
            first = self._seq + 1
            self._seq += len(chunk)
            self._sock.send(b"".join(
                NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, NLM_F_REQUEST,
                              first + i, 0) + body
                for i, body in enumerate(chunk)))
            pending = len(chunk)
            while pending:
                for reply, _flags, seq, payload in messages(
                        self._sock.recv(RECV_SIZE)):
                    i = start + seq - first
                    if not start <= i < start + len(chunk) or i in answers:
                        continue  # an answer to an earlier, abandoned request
                    if reply == NLMSG_ERROR:
                        (code,) = NLMSGERR.unpack_from(payload)
                        answers[i] = NetlinkError(-code, os.strerror(-code))
                    else:
                        answers[i] = payload
                    pending -= 1
        return [answers[i] for i in range(len(bodies))]


def _link(payload: bytes) -> Link:
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(payload)
    attrs = attributes(payload, IFINFOMSG.size)
    kind = None
    if IFLA_LINKINFO in attrs:
        info = attributes(attrs[IFLA_LINKINFO])
        if IFLA_INFO_KIND in info:
            kind = _string(info[IFLA_INFO_KIND])
    return Link(index, _string(attrs.get(IFLA_IFNAME, b"")), kind,
                _u32(attrs[IFLA_MTU]), flags)


def link(sock: Socket, name: str | None = None,
         index: int | None = None) -> Link | None:
    """Return the link called `name` (or numbered `index`); None if absent."""
    attrs = attribute(IFLA_EXT_MASK, struct.pack("=I", RTEXT_FILTER_SKIP_STATS))
    if name is not None:
        attrs += attribute(IFLA_IFNAME, name.encode() + b"\0")
    body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, index or 0, 0, 0) + attrs
    try:
        (payload,) = sock.request(RTM_GETLINK, 0, body)
    except NetlinkError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise
    return _link(payload)


def addresses(sock: Socket, index: int | None = None) -> list[Address]:
    """Return the addresses of link `index`, or of every link."""
    body = IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    found: list[Address] = []
    for payload in sock.request(RTM_GETADDR, NLM_F_DUMP, body):
        family, prefixlen, _flags, _scope, link_index = IFADDRMSG.unpack_from(payload)
        if index is not None and link_index != index:
            continue
        attrs = attributes(payload, IFADDRMSG.size)
        if IFA_ADDRESS in attrs:
            found.append(Address(link_index, family,
                                 socket.inet_ntop(family, attrs[IFA_ADDRESS]),
                                 prefixlen))
    return found


def routes(sock: Socket, destinations: list[str]) -> list[Route | None]:
    """Ask the kernel for the route to each destination, in order.

    The questions go out many to a datagram: a master asks one per
    worker. None where the kernel has none (unreachable, prohibited and
    the like).
    """
    bodies = []
    for destination in destinations:
        family = socket.AF_INET6 if ":" in destination else socket.AF_INET
        packed = socket.inet_pton(family, destination)
        bodies.append(RTMSG.pack(family, len(packed) * 8, 0, 0, 0, 0, 0, 0, 0)
                      + attribute(RTA_DST, packed))
    found: list[Route | None] = []
    for answer in sock.request_each(RTM_GETROUTE, bodies):
        if isinstance(answer, NetlinkError):
            # no route, prohibit, blackhole; or no IPv6 in this kernel
            if answer.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH,
                                errno.EACCES, errno.EINVAL, errno.EAFNOSUPPORT):
                found.append(None)
                continue
            raise answer
        found.append(_route(answer))
    return found


def _route(payload: bytes) -> Route:
    attrs = attributes(payload, RTMSG.size)
    mtu = None
    if RTA_METRICS in attrs:
        metrics = attributes(attrs[RTA_METRICS])
        if RTAX_MTU in metrics and _u32(metrics[RTAX_MTU]):
            mtu = _u32(metrics[RTAX_MTU])
    oif = _u32(attrs[RTA_OIF]) if RTA_OIF in attrs else None
    return Route(oif, mtu)


def _change_link(sock: Socket, name: str, flags: int = 0, change: int = 0,
                 attrs: bytes = b"") -> None:
    body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, flags, change)
    sock.request(RTM_NEWLINK, NLM_F_ACK,
                 body + attribute(IFLA_IFNAME, name.encode() + b"\0") + attrs)


def set_mtu(sock: Socket, name: str, mtu: int) -> None:
    _change_link(sock, name, attrs=attribute(IFLA_MTU, struct.pack("=I", mtu)))


def set_flags(sock: Socket, name: str, flags: int, mask: int) -> None:
    """Set the link's flags under `mask` (IFF_UP to bring it up) to `flags`."""
    _change_link(sock, name, flags, mask)


def delete_link(sock: Socket, name: str) -> None:
    body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    sock.request(RTM_DELLINK, NLM_F_ACK,
                 body + attribute(IFLA_IFNAME, name.encode() + b"\0"))


def _address_message(index: int, address: str, prefixlen: int) -> bytes:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    packed = socket.inet_pton(family, address)
    body = IFADDRMSG.pack(family, prefixlen, 0, 0, index)
    if family == socket.AF_INET:  # as `ip addr add` sends it
        body += attribute(IFA_LOCAL, packed)
    return body + attribute(IFA_ADDRESS, packed)


def add_address(sock: Socket, index: int, address: str, prefixlen: int) -> None:
    sock.request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                 _address_message(index, address, prefixlen))


def delete_address(sock: Socket, index: int, address: str, prefixlen: int) -> None:
    sock.request(RTM_DELADDR, NLM_F_ACK,
                 _address_message(index, address, prefixlen))


def genl_family_id(sock: Socket, name: str) -> int | None:
    """Return the id of the generic-netlink family `name`, None if absent.

    `sock` is a NETLINK_GENERIC socket. Asking may load the family's module.
    """
    body = GENLMSGHDR.pack(CTRL_CMD_GETFAMILY, 1, 0)
    body += attribute(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0")
    try:
        (payload,) = sock.request(GENL_ID_CTRL, 0, body)
    except NetlinkError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    family: int = struct.unpack_from(
        "=H", attributes(payload, GENLMSGHDR.size)[CTRL_ATTR_FAMILY_ID])[0]
    return family


def genl_family_exists(name: str) -> bool:
    """Say whether the generic-netlink family `name` is registered."""
    with Socket(NETLINK_GENERIC) as sock:
        return genl_family_id(sock, name) is not None
