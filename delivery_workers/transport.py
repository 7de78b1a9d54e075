"""The address guard: every address a host resolves to must be public (``durian.addresses``),
unless ``allow_private_addresses`` is set for development."""

from __future__ import annotations

import asyncio
import socket

from durian.addresses import blocked_reason
from durian.exceptions import PermanentDeliveryError, TransientDeliveryError

__all__ = ["check_host"]


async def check_host(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses of ``host``; raise ``PermanentDeliveryError`` if any is not public."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TransientDeliveryError(f"cannot resolve {host!r}: {exc.strerror}") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    reason = None if allow_private else blocked_reason(host, addresses)
    if reason is not None:
        raise PermanentDeliveryError(reason)
    return addresses
