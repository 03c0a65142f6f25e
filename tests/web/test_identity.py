"""The small rules behind ownership and the per-address limits, without a server: which
address a request counts as (trusted proxies, IPv6 by /64), which Origin is this site's, what
a client id looks like, the token buckets and the stream caps."""

from __future__ import annotations

import ipaddress

import pytest

from app.web.deps import valid_client_id
from app.web.errors import TooBusy, Unavailable
from app.web.limits import RateLimiter, StreamCaps
from app.web.middleware import ClientAddress, SameOrigin, group


def scope(peer: str, forwarded: str | None = None) -> dict:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return {"type": "http", "client": (peer, 1234), "headers": headers}


def test_forwarded_for_counts_only_behind_trusted_proxies_and_is_read_from_the_right():
    proxies = [ipaddress.ip_network("10.0.0.0/8")]
    where = ClientAddress(None, proxies).address
    assert where(scope("10.0.0.5", "198.51.100.7")) == "198.51.100.7"
    # a client cannot pose as another by writing the header itself: the proxy appends
    assert where(scope("10.0.0.5", "1.2.3.4, 198.51.100.7")) == "198.51.100.7"
    assert where(scope("10.0.0.5", "198.51.100.7, 10.0.0.9")) == "198.51.100.7"  # 2 proxies
    assert where(scope("192.0.2.1", "198.51.100.7")) == "192.0.2.1"  # not a proxy: ignored
    assert ClientAddress(None, []).address(scope("10.0.0.5", "1.2.3.4")) == "10.0.0.5"


def test_an_ipv6_client_counts_by_its_64_and_a_mapped_ipv4_as_itself():
    assert group("2001:db8:1:2:aaaa::1") == group("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert group("2001:db8:1:3::1") != group("2001:db8:1:2::1")
    assert group("::ffff:192.0.2.7") == "192.0.2.7"
    assert group("198.51.100.7") == "198.51.100.7"


@pytest.mark.parametrize(("origin", "host", "same"), [
    ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
    ("https://play.example", "play.example", True),
    ("https://play.example:443", "play.example", True),
    ("http://play.example", "play.example:80", True),
    ("https://play.example:8443", "play.example", True),  # a proxy passed the host alone
    ("http://127.0.0.1:8001", "127.0.0.1:8000", False),
    ("https://evil.example", "play.example", False),
    ("https://play.example.evil.example", "play.example", False),
    ("null", "play.example", False),
    ("https://docs.example", "play.example", True),  # allowed by the setting
])
def test_which_origins_are_this_site(origin, host, same):
    check = SameOrigin(None, {"https://docs.example"})
    assert check.same(origin, {b"host": host.encode()}) is same


def test_client_ids_look_like_the_ones_the_server_makes():
    assert valid_client_id("aC0aPvckS82pEKCt1QW0EA")
    for bad in ("", "short", "a" * 65, "has space in it 1234", "quote\"in-the-middle-x",
                "%%%%%%%%%%%%%%%%%%%%"):
        assert not valid_client_id(bad)


def test_a_bucket_says_its_limit_and_when_to_come_back():
    joins = RateLimiter(6, burst=6, period=300.0)
    assert joins.describe() == "6 per 5 minutes"
    assert [joins.take("a") for _ in range(6)] == [0] * 6
    assert joins.wait("a") == joins.take("a") > 0  # wait() takes nothing
    assert joins.take("b") == 0  # per key
    assert RateLimiter(30).describe() == "30 per minute"
    assert RateLimiter(20, period=3600.0).describe() == "20 per hour"


def test_stream_caps_refuse_per_address_then_per_server_and_give_places_back():
    caps = StreamCaps(total=3, per_address=2)
    caps.acquire("a")
    caps.acquire("a")
    with pytest.raises(TooBusy) as per_address:
        caps.acquire("a")
    assert int(per_address.value.headers["Retry-After"]) >= 1
    caps.acquire("b")
    with pytest.raises(Unavailable) as full:
        caps.acquire("c")
    assert full.value.status == 503 and full.value.headers["Retry-After"]
    caps.release("a")
    caps.acquire("c")
    assert (caps.open, caps.served, caps.refused) == (3, 4, 2)
    for address in ("a", "b", "c"):
        caps.release(address)
    assert caps.open == 0 and caps.by_address == {}
