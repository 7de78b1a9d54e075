"""Which network addresses a webhook may be delivered to, and which host spellings are taken.

Only public (globally routable, non-multicast) addresses by default: never
loopback, private, link-local, multicast, reserved or unspecified ones.
An IPv6 address that carries an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``,
IPv4-translated ``::ffff:0:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64
``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo ``2001::/32``) is judged by that
IPv4 address too, since that is where its packets end up. ``AddressPolicy``
adds the settings' openings: every address (``allow_private_addresses``,
development) or a list of networks (``address_allowlist``). Both delivery
paths (the delivery workers and the producer's inline mode) ask this module,
for the very address a socket connects to.

A listener's host must also be written the way HTTP clients will read it
(:func:`host_problem`): an IPv4 address only as ``a.b.c.d``, never in the
numeric, octal, hex or shortened forms that ``inet_aton`` accepts, nor with
ideographic or full-width dots that IDNA maps to ``.``; no percent-encoding.
A URL whose host is an IP literal the policy refuses is refused when the
listener is written (:meth:`AddressPolicy.url_refusal`), not only at delivery.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

import idna

from durian.conf import Settings

__all__ = ["AddressPolicy", "embedded_ipv4", "host_problem", "is_public"]

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Characters IDNA (and so httpx) turns into ".": ideographic, full-width, half-width.
_UNICODE_DOTS = "\u3002\uff0e\uff61"
#: A label that ``inet_aton`` reads as part of an IPv4 address.
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")

_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPATIBLE = ipaddress.ip_network("::/96")


def _parse(address: str) -> _Address:
    return ipaddress.ip_address(address.split("%", 1)[0])


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (and reaches), if any."""
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip in _TRANSLATED or ip in _NAT64:
        return [low32]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    if ip in _COMPATIBLE and int(ip) > 1:  # not :: nor ::1
        return [low32]
    return []


def _is_public(ip: _Address) -> bool:
    return ip.is_global and not ip.is_multicast


def is_public(address: str) -> bool:
    """A public address, and for an IPv6 address carrying IPv4 ones, those are public too."""
    ip = _parse(address)
    if isinstance(ip, ipaddress.IPv6Address):
        carried = embedded_ipv4(ip)
        if carried:
            return all(_is_public(v4) for v4 in carried)
    return _is_public(ip)


def host_problem(host: str) -> str | None:
    """What is wrong with how ``host`` (a URL's host, without brackets) is written, or None.

    HTTP clients normalise hosts before they connect (IDNA maps ``127。0。0。1`` to
    ``127.0.0.1``; the C library reads ``2130706433`` or ``0x7f.1`` as 127.0.0.1), so
    a host must already be in the form that is connected to, or the address checked
    is not the one reached.
    """
    if ":" in host:  # an IPv6 literal
        if "%" in host:
            return f"the IPv6 address {host!r} carries a zone id (%...); remove it"
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"{host!r} is not a valid IPv6 address"
        return None
    if "%" in host:
        return f"the host {host!r} is percent-encoded; write it plainly"
    if any(dot in host for dot in _UNICODE_DOTS):
        return f"the host {host!r} uses a non-ASCII dot; write it with '.'"
    try:
        ascii_host = host if host.isascii() else idna.encode(host).decode("ascii")
    except idna.IDNAError as exc:
        return f"the host {host!r} is not a valid international domain name ({exc})"
    labels = ascii_host.lower().split(".")
    if all(_NUMERIC_LABEL.match(label) for label in labels if label) and labels != [""]:
        try:
            canonical = str(ipaddress.IPv4Address(ascii_host))
        except ValueError:
            canonical = None
        if canonical != host:
            try:
                meant = socket.inet_ntoa(socket.inet_aton(ascii_host.rstrip(".")))
                hint = f"; write it as {meant}"
            except OSError:
                hint = ""
            return f"the host {host!r} is not an IPv4 address in the form a.b.c.d{hint}"
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """The addresses deliveries may reach: public ones, plus the settings' openings."""

    allow_all: bool = False
    allowlist: tuple[_Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> AddressPolicy:
        return cls(
            allow_all=settings.allow_private_addresses,
            allowlist=tuple(
                ipaddress.ip_network(n, strict=False) for n in settings.address_allowlist
            ),
        )

    def _listed(self, ip: _Address) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allowlist)

    def allows(self, address: str) -> bool:
        if self.allow_all:
            return True
        ip = _parse(address)
        if self._listed(ip):
            return True
        if isinstance(ip, ipaddress.IPv6Address):
            carried = embedded_ipv4(ip)
            if carried:
                return all(_is_public(v4) or self._listed(v4) for v4 in carried)
        return _is_public(ip)

    def blocked_reason(self, host: str, addresses: Iterable[str]) -> str | None:
        """Why a delivery to ``host`` (resolved to ``addresses``) is refused, or ``None``."""
        blocked = sorted({address for address in addresses if not self.allows(address)})
        if not blocked:
            return None
        if blocked == [host]:
            subject = f"{host} is a non-public address"
        else:
            subject = f"{host!r} resolves to a non-public address ({', '.join(blocked)})"
        return (
            f"{subject}; deliveries to internal networks are refused (DURIAN_ADDRESS_ALLOWLIST "
            "opens given networks, DURIAN_ALLOW_PRIVATE_ADDRESSES all of them, for development)"
        )

    def url_refusal(self, url: str) -> str | None:
        """Why a listener URL is refused before any delivery: its host is an IP literal
        this policy does not allow. Host names are judged when they are resolved."""
        host = urllib.parse.urlsplit(url).hostname or ""
        try:
            _parse(host)
        except ValueError:
            return None
        return self.blocked_reason(host, [host])
