"""The address guard: every spelling of a refused address is refused when the listener is
written, or its connection is refused as it is made; nothing reaches the receiver.

The receiver listens on 127.0.0.1; hosts are spellings of loopback addresses, so a guard
that failed would connect there and nowhere else. Other refused ranges (private,
link-local, NAT64, 6to4, ...) are checked against the policy and the socket factory
without connecting.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durian import conf, records
from durian.addresses import AddressPolicy, embedded_ipv4, host_problem, is_public
from durian.exceptions import InvalidListener
from durian.http.dispatch import Dispatcher
from durian.http.transport import AddressRefused, guarded_socket, guarded_transport
from durian.records import DeliveryJob, Event, ListenerSpec, job_id, validate_url
from durian.signing import generate_secret
from tests.receiver import Receiver

GUARDED = AddressPolicy()
DOTS = [".", "\u3002", "\uff0e", "\uff61"]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


# -- spellings ------------------------------------------------------------------------


def _part(value: int, style: str) -> str:
    return {"dec": str(value), "oct": f"0{value:o}", "hex": f"0x{value:x}", "pad": f"{value:03d}"}[
        style
    ]


@st.composite
def loopback_hosts(draw: st.DrawFn) -> str:
    """A way to write an address in 127.0.0.0/8 that some parser reads as that address."""
    octets = [127, draw(st.integers(0, 255)), draw(st.integers(0, 255)), draw(st.integers(1, 254))]
    value = int(ipaddress.IPv4Address(".".join(map(str, octets))))
    form = draw(st.sampled_from(["dotted", "number", "short", "mapped"]))
    # Mostly plain decimal: the spelling a person writes, and the one a mapped dot hides.
    styles = st.sampled_from(["dec", "dec", "dec", "dec", "oct", "hex", "pad"])
    if form == "number":
        return _part(value, draw(styles))
    if form == "short":  # 127.N: the last part fills the remaining 24 bits
        return f"{_part(127, draw(styles))}.{_part(value & 0xFFFFFF, draw(styles))}"
    if form == "mapped":
        return f"[::ffff:{'.'.join(map(str, octets))}]"
    parts = [_part(o, draw(styles)) for o in octets]
    dots = st.sampled_from(DOTS) if draw(st.booleans()) else st.just(draw(st.sampled_from(DOTS)))
    host = parts[0]
    for part in parts[1:]:
        host += draw(dots) + part
    return host + draw(st.sampled_from(["", "", "."]))


def url_for(host: str, receiver: Receiver, path: str) -> str:
    return f"http://{host}:{receiver.port}{path}"


def unvalidated_listener(url: str) -> ListenerSpec:
    """A listener whose URL skipped validation: what the connection-level guard must stop
    if a record ever got past the checks at creation."""
    saved = records.validate_url
    records.validate_url = lambda value: value
    try:
        return ListenerSpec(id="lst_guard", hook="person", url=url, secret=generate_secret())
    finally:
        records.validate_url = saved


def deliver(url: str) -> tuple[bool, str | None]:
    """(contacted, error) of one attempt with the guard on."""
    listener = unvalidated_listener(url)
    event = Event(id="evt_guard", hook="person", occurred_at=datetime.now(UTC), data={})
    job = DeliveryJob(
        id=job_id(event.id, listener.id),
        event=event,
        listener_id=listener.id,
        listener_version=listener.version,
    )

    async def go() -> tuple[bool, str | None]:
        dispatcher = Dispatcher(conf.load(environ={}, overrides={"DELIVERY_TIMEOUT": 2}))
        try:
            result = await dispatcher.attempt(job, listener)
        finally:
            await dispatcher.aclose()
        return result.contacted, result.error

    return asyncio.run(go())


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(host=loopback_hosts())
def test_every_spelling_of_loopback_is_refused_at_creation_or_at_connection(
    receiver: Receiver, host: str
) -> None:
    url = url_for(host, receiver, "/guard")
    try:
        validate_url(url)
        refusal = GUARDED.url_refusal(url)
    except InvalidListener:
        refusal = "refused at creation"
    # Whether or not creation refused it, the connection is refused too.
    contacted, error = deliver(url)
    assert refusal is not None or not contacted, (url, error)
    assert error is not None and "answered" not in error, (url, error)
    assert receiver.to("/guard") == [], url


def test_ideographic_dots_reach_no_one_even_past_validation(receiver: Receiver) -> None:
    for dot in DOTS[1:]:
        url = url_for(dot.join(["127", "0", "0", "1"]), receiver, "/dots")
        with pytest.raises(InvalidListener, match="non-ASCII dot"):
            validate_url(url)
        contacted, error = deliver(url)
        assert not contacted and "127.0.0.1 is a non-public address" in (error or ""), error
    assert receiver.to("/dots") == []


def test_the_socket_factory_refuses_the_address_it_would_connect() -> None:
    create = guarded_socket(GUARDED)
    for family, address in [
        (socket.AF_INET, ("127.0.0.1", 80)),
        (socket.AF_INET, ("10.0.0.1", 80)),
        (socket.AF_INET, ("169.254.169.254", 80)),
        (socket.AF_INET6, ("::1", 80, 0, 0)),
        (socket.AF_INET6, ("::ffff:127.0.0.1", 80, 0, 0)),
        (socket.AF_INET6, ("64:ff9b::a9fe:a9fe", 80, 0, 0)),
    ]:
        with pytest.raises(AddressRefused, match="non-public address"):
            create((family, socket.SOCK_STREAM, 6, "", address))
    sock = create((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 80)))
    sock.close()


def test_an_httpx_client_on_the_guarded_transport_cannot_reach_loopback(
    receiver: Receiver,
) -> None:
    async def go() -> None:
        async with httpx.AsyncClient(transport=guarded_transport(GUARDED)) as client:
            for host in ["127.0.0.1", "127\u30020\u30020\u30021", "[::ffff:127.0.0.1]"]:
                with pytest.raises(httpx.TransportError):
                    await client.post(url_for(host, receiver, "/client"))

    asyncio.run(go())
    assert receiver.to("/client") == []


# -- policy and spelling, no connection ---------------------------------------------------


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True), ("127.0.0.1", False), ("10.0.0.1", False), ("169.254.169.254", False),
        ("::1", False), ("fe80::1", False), ("fc00::1", False), ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True), ("2001:4860:4860::8888", True), ("100.64.0.1", False),
        ("64:ff9b::7f00:1", False), ("64:ff9b::a00:1", False), ("64:ff9b::808:808", True),
        ("2002:7f00:1::", False), ("2002:a00:1::1", False), ("2002:808:808::1", True),
        ("::7f00:1", False), ("::a00:1", False), ("::ffff:0:7f00:1", False),
        ("::ffff:0:a00:1", False), ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
    ],
)  # fmt: skip
def test_address_classification(address: str, public: bool) -> None:
    assert is_public(address) is public
    assert GUARDED.allows(address) is public


def test_ipv6_forms_carrying_ipv4_are_judged_by_it() -> None:
    assert embedded_ipv4(ipaddress.IPv6Address("64:ff9b::a9fe:a9fe")) == [
        ipaddress.IPv4Address("169.254.169.254")
    ]
    assert embedded_ipv4(ipaddress.IPv6Address("2001:db8::1")) == []
    # An allowlisted IPv4 network opens its IPv6 embeddings too.
    policy = AddressPolicy(allowlist=(ipaddress.ip_network("10.1.2.0/24"),))
    assert policy.allows("::ffff:10.1.2.3") and policy.allows("64:ff9b::a01:203")
    assert not policy.allows("::ffff:10.1.3.1")


@pytest.mark.parametrize(
    "host",
    [
        "2130706433", "017700000001", "0x7f000001", "127.1", "127.0.1", "0x7f.0.0.1",
        "0177.0.0.1", "127.000.000.001", "127.0.0.1.", "127\u30020\u30020\u30021",
        "127\uff0e0\uff0e0\uff0e1", "127\uff610\uff610\uff611", "127%2e0%2e0%2e1",
        "fe80::1%eth0", "\uff11\uff12\uff17.0.0.1",
    ],
)  # fmt: skip
def test_hosts_not_written_as_clients_read_them_are_refused(host: str) -> None:
    assert host_problem(host) is not None
    with pytest.raises(InvalidListener, match="is refused"):
        validate_url(f"http://{host if ':' not in host else f'[{host}]'}/hook")


def test_numeric_forms_say_how_to_write_the_address() -> None:
    assert "write it as 127.0.0.1" in (host_problem("2130706433") or "")


@pytest.mark.parametrize(
    "host", ["example.com", "EXAMPLE.com", "bücher.example", "8.8.8.8", "2001:db8::1", "a-1.io"]
)
def test_ordinary_hosts_are_taken(host: str) -> None:
    assert host_problem(host.lower()) is None


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://10.0.0.1/hook", True), ("http://[::1]/hook", True),
        ("http://169.254.169.254/latest", True), ("http://[64:ff9b::a00:1]/", True),
        ("https://8.8.8.8/hook", False), ("https://example.com/hook", False),
        ("http://localhost/hook", False),  # a name: judged when it is resolved
    ],
)  # fmt: skip
def test_ip_literals_outside_the_policy_are_refused_when_written(url: str, refused: bool) -> None:
    assert (GUARDED.url_refusal(url) is not None) is refused
    assert AddressPolicy(allow_all=True).url_refusal(url) is None
