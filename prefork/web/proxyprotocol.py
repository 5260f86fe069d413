"""
HAProxy's PROXY protocol, versions 1 and 2: the header a load balancer
(HAProxy's C{send-proxy}, nginx's C{proxy_protocol}, an AWS NLB) sends ahead
of the client's bytes to say whom the connection came from.

With C{--proxy-protocol}, every connection must start with one, from a peer
in C{--forwarded-allow-ips}; the client's address and the address it
connected to replace the connection's own for everything above (the WSGI
environ, the access log).  A connection without a valid header, or from
any other peer, is closed without a response.

Twisted has a parser (C{twisted.protocols.haproxy}), but only its endpoint
wrapper is public, and it is lenient where a front server must not be: it
takes any bytes for a version 1 address or port, and drops a connection
whose header arrives in more than one segment.  The parser here follows the
specification (haproxy.org, C{doc/proxy-protocol.txt}) strictly: version 1
lines of at most 107 bytes with well-formed addresses and ports; version 2
headers of a known command, family and protocol, with an address block and
TLVs that fit their declared length, which is bounded.  The TLVs are
checked and skipped; a C{LOCAL} command, a version 1 C{UNKNOWN} and a
version 2 C{UNSPEC} family keep the connection's own addresses, as the
specification says.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from prefork.web.proxies import TrustedProxies

V1_PREFIX = b"PROXY "
#: The longest version 1 line, its CRLF included.
V1_MAX_LENGTH = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: The largest version 2 address block and TLVs accepted, in bytes: a
#: UNIX address block (216) and generous room for TLVs.  The protocol allows
#: 65535; a header that large is an attack, not a load balancer.
V2_MAX_LENGTH = 4096

_V2_LOCAL, _V2_PROXY = 0x0, 0x1
#: Version 2's family and protocol byte: the address block's length, for
#: the stream families; UNSPEC has none.
_V2_STREAM_FAMILIES = {0x00: 0, 0x11: 12, 0x21: 36, 0x31: 216}
_V2_DATAGRAM_FAMILIES = (0x12, 0x22, 0x32)

#: The addresses a header can give.
Address = IPv4Address | IPv6Address | UNIXAddress

_log = Logger()


class InvalidProxyHeader(Exception):
    """
    The bytes are no valid PROXY protocol header; the message says why.
    """


@dataclass(frozen=True)
class ProxyHeader:
    """
    A parsed header.

    @ivar length: How many bytes it took; the client's own bytes follow.
    @ivar source: The client's address, or L{None} to keep the
        connection's own (C{LOCAL}, C{UNKNOWN}, C{UNSPEC}).
    @ivar destination: The address the client connected to, or L{None}.
    """

    length: int
    source: Address | None = None
    destination: Address | None = None


def parseHeader(data: bytes) -> ProxyHeader | None:
    """
    The PROXY header at the start of C{data}.

    @return: The header, or L{None} when C{data} is a valid beginning of
        one but not all of it.
    @raise InvalidProxyHeader: C{data} does not start with a valid header.
    """
    if data[:1] == b"\r":
        return _parseV2(data)
    if data[:1] == b"P":
        return _parseV1(data)
    if not data:
        return None
    raise InvalidProxyHeader("no PROXY protocol signature")


def _parseV1(data: bytes) -> ProxyHeader | None:
    if data[: len(V1_PREFIX)] != V1_PREFIX[: len(data)]:
        raise InvalidProxyHeader("no PROXY protocol signature")
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        if len(data) >= V1_MAX_LENGTH or b"\n" in data:
            raise InvalidProxyHeader("version 1 header not ended by CRLF within 107 bytes")
        return None
    length = end + 2
    fields = data[len(V1_PREFIX) : end].split(b" ")
    if fields[0] == b"UNKNOWN":
        # The specification: anything up to the CRLF is to be ignored.
        return ProxyHeader(length)
    if len(fields) != 5 or fields[0] not in (b"TCP4", b"TCP6"):
        raise InvalidProxyHeader("version 1 header is not 'PROXY TCP4|TCP6 SOURCE DESTINATION SPORT DPORT'")
    version = 4 if fields[0] == b"TCP4" else 6
    source, destination = _v1Address(fields[1], version), _v1Address(fields[2], version)
    sourcePort, destinationPort = _v1Port(fields[3]), _v1Port(fields[4])
    address = IPv4Address if version == 4 else IPv6Address
    return ProxyHeader(length, address("TCP", source, sourcePort), address("TCP", destination, destinationPort))


def _v1Address(field: bytes, version: int) -> str:
    text = field.decode("ascii", "replace")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidProxyHeader(f"version 1 address {text!r} is not an IPv{version} address") from None
    if address.version != version or "%" in text:
        raise InvalidProxyHeader(f"version 1 address {text!r} is not an IPv{version} address")
    return str(address)


def _v1Port(field: bytes) -> int:
    if not (field.isdigit() and field.isascii() and len(field) <= 5) or (field[:1] == b"0" and field != b"0"):
        raise InvalidProxyHeader(f"version 1 port {field[:8]!r} is not a port number")
    port = int(field)
    if port > 65535:
        raise InvalidProxyHeader(f"version 1 port {port} is above 65535")
    return port


def _parseV2(data: bytes) -> ProxyHeader | None:
    if data[:12] != V2_SIGNATURE[: len(data[:12])]:
        raise InvalidProxyHeader("no PROXY protocol signature")
    if len(data) < 16:
        return None
    versionCommand, family, declared = data[12], data[13], struct.unpack("!H", data[14:16])[0]
    if versionCommand >> 4 != 2:
        raise InvalidProxyHeader(f"version 2 signature with version {versionCommand >> 4}")
    command = versionCommand & 0x0F
    if command not in (_V2_LOCAL, _V2_PROXY):
        raise InvalidProxyHeader(f"version 2 command {command} is neither LOCAL nor PROXY")
    if declared > V2_MAX_LENGTH:
        raise InvalidProxyHeader(f"version 2 header of {declared} bytes, more than {V2_MAX_LENGTH}")
    length = 16 + declared
    if len(data) < length:
        return None
    if command == _V2_LOCAL:
        # The sender's own connection (a health check): the family and any
        # addresses are to be ignored.
        return ProxyHeader(length)
    if family in _V2_DATAGRAM_FAMILIES:
        raise InvalidProxyHeader("version 2 header for a datagram protocol on a stream connection")
    if family not in _V2_STREAM_FAMILIES:
        raise InvalidProxyHeader(f"version 2 family and protocol 0x{family:02x} are unknown")
    size = _V2_STREAM_FAMILIES[family]
    if declared < size:
        raise InvalidProxyHeader(f"version 2 length {declared} is too short for its address family")
    block = data[16 : 16 + size]
    _checkTLVs(data[16 + size : length])
    if family == 0x00:
        return ProxyHeader(length)
    return ProxyHeader(length, *_v2Addresses(family, block))


def _v2Addresses(family: int, block: bytes) -> tuple[Address, Address]:
    if family == 0x11:
        source, destination, sourcePort, destinationPort = struct.unpack("!4s4sHH", block)
        return (
            IPv4Address("TCP", str(ipaddress.IPv4Address(source)), sourcePort),
            IPv4Address("TCP", str(ipaddress.IPv4Address(destination)), destinationPort),
        )
    if family == 0x21:
        source, destination, sourcePort, destinationPort = struct.unpack("!16s16sHH", block)
        return (
            IPv6Address("TCP", str(ipaddress.IPv6Address(source)), sourcePort),
            IPv6Address("TCP", str(ipaddress.IPv6Address(destination)), destinationPort),
        )
    return UNIXAddress(block[:108].split(b"\0", 1)[0]), UNIXAddress(block[108:].split(b"\0", 1)[0])


def _checkTLVs(tlvs: bytes) -> None:
    """
    Walk the type-length-value records after the addresses: each must fit
    in the header.  Their content is not used.
    """
    offset = 0
    while offset < len(tlvs):
        if offset + 3 > len(tlvs):
            raise InvalidProxyHeader("version 2 TLV cut short")
        (size,) = struct.unpack("!H", tlvs[offset + 1 : offset + 3])
        offset += 3 + size
        if offset > len(tlvs):
            raise InvalidProxyHeader("version 2 TLV runs past the header")


class ProxyHeaderProtocol(ProtocolWrapper):
    """
    Reads a connection's PROXY header, then hands the rest of its bytes to
    the wrapped protocol, which sees the header's addresses as the peer's
    and its own.

    The wrapped protocol is connected at once, so that its timeouts cover
    a header that never comes.
    """

    factory: ProxyHeaderFactory
    #: The connection underneath, and the protocol the header is for.
    transport: Any
    wrappedProtocol: Any
    _header: ProxyHeader | None = None
    _buffer = b""

    def makeConnection(self, transport: Any) -> None:
        super().makeConnection(transport)
        peer = getattr(transport.getPeer(), "host", None)
        if peer not in self.factory.trusted:
            self._refuse(f"{peer} is not in --forwarded-allow-ips")

    def dataReceived(self, data: bytes) -> None:
        if self._header is not None:
            self.wrappedProtocol.dataReceived(data)
            return
        if self.disconnecting:
            return
        self._buffer += data
        try:
            header = parseHeader(self._buffer)
        except InvalidProxyHeader as e:
            self._refuse(str(e))
            return
        if header is not None:
            self._header = header
            rest, self._buffer = self._buffer[header.length :], b""
            if rest:
                self.wrappedProtocol.dataReceived(rest)

    def _refuse(self, reason: str) -> None:
        self.disconnecting = True
        self.factory.refused(self.transport.getPeer(), reason)
        # Past whatever the wrapped protocol would say: nothing goes out.
        self.transport.abortConnection()

    def getPeer(self) -> Any:
        if self._header is not None and self._header.source is not None:
            return self._header.source
        return self.transport.getPeer()

    def getHost(self) -> Any:
        if self._header is not None and self._header.destination is not None:
            return self._header.destination
        return self.transport.getHost()


class ProxyHeaderFactory(WrappingFactory):
    """
    Wraps a factory's connections in L{ProxyHeaderProtocol}, closing those
    from peers not in C{trusted}.

    @ivar refusals: How many connections it refused.
    """

    protocol = ProxyHeaderProtocol
    noisy = False
    #: A refusal is logged at most this often, in seconds: a misconfigured
    #: load balancer shows, a flood of bad connections does not flood the
    #: log.
    logInterval = 60.0

    def __init__(self, wrappedFactory: Any, trusted: TrustedProxies, clock: Any = None) -> None:
        super().__init__(wrappedFactory)
        if clock is None:
            from twisted.internet import reactor as clock
        self.trusted = trusted
        self.clock = clock
        self.refusals = 0
        self._nextLog = 0.0

    def refused(self, peer: Any, reason: str) -> None:
        self.refusals += 1
        now = self.clock.seconds()
        if now >= self._nextLog:
            self._nextLog = now + self.logInterval
            _log.info(
                "Closed a connection from {peer} without a response: {reason} ({count} so far)",
                peer=getattr(peer, "host", None) or "a UNIX socket", reason=reason, count=self.refusals,
            )
