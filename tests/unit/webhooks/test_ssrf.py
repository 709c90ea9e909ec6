"""S5: the SSRF guard refuses every non-public address however it is written, and the URL
policy refuses http://, userinfo and fragments."""

from __future__ import annotations

import ipaddress

import pytest

from vigil.core.errors import InvalidInput
from vigil.webhooks.resolver import StaticHosts
from vigil.webhooks.ssrf import AddressPolicy, parse_ip_literal
from vigil.webhooks.url_policy import check_registration, parse_url

# (host as written in the URL, the category it must be refused as)
REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.1", "loopback"),
    ("127.0.1", "loopback"),
    ("0x7f000001", "loopback"),
    ("0x7f.0.0.1", "loopback"),
    ("2130706433", "loopback"),
    ("0177.0.0.1", "loopback"),
    ("017700000001", "loopback"),
    ("127.0.0.1.", "loopback"),
    ("[::1]", "loopback"),
    ("[::ffff:127.0.0.1]", "loopback"),
    ("[::ffff:7f00:1]", "loopback"),
    ("[0:0:0:0:0:ffff:127.0.0.1]", "loopback"),
    ("[64:ff9b::7f00:1]", "loopback"),
    ("[2002:7f00:1::1]", "loopback"),
    ("[::127.0.0.1]", "loopback"),
    ("localhost", "loopback"),
    ("api.localhost", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("0", "unspecified"),
    ("[::]", "unspecified"),
    ("10.0.0.1", "private"),
    ("012.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("0xc0a80101", "private"),
    ("[fd00::1]", "private"),
    ("169.254.169.254", "link_local"),
    ("0xa9fea9fe", "link_local"),
    ("2852039166", "link_local"),
    ("[::ffff:169.254.169.254]", "link_local"),
    ("[fd00:ec2::254]", "private"),
    ("[fe80::1]", "link_local"),
    ("[fe80::1%25eth0]", "link_local"),
    ("100.64.0.1", "shared_cgnat"),
    ("100.100.100.200", "shared_cgnat"),
    ("224.0.0.1", "multicast"),
    ("[ff02::1]", "multicast"),
    ("239.255.255.250", "multicast"),
    ("192.0.2.10", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("[2001:db8::1]", "documentation"),
    ("255.255.255.255", "reserved"),
    ("240.0.0.1", "reserved"),
    ("198.18.0.1", "reserved"),
]

NOTHING_RESOLVES = StaticHosts([], fallback=StaticHosts(["unused.test=8.8.8.8"]))
DEFAULT = AddressPolicy()


class NoDns:
    def resolve(self, host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return []


def test_the_table_is_large_enough() -> None:
    assert len(REFUSED) >= 25


@pytest.mark.parametrize(("host", "category"), REFUSED)
def test_non_public_hosts_are_refused_in_every_encoding(host: str, category: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_registration(f"https://{host}/hook", DEFAULT, NoDns())
    assert refused.value.extra["reason"] == "address_not_allowed"
    assert refused.value.extra["category"] == category


def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    resolver = StaticHosts(["intranet.example.com=10.20.30.40"])
    with pytest.raises(InvalidInput) as refused:
        check_registration("https://intranet.example.com/hook", DEFAULT, resolver)
    assert refused.value.extra["category"] == "private"


def test_a_name_with_any_private_answer_is_refused() -> None:
    resolver = StaticHosts(["mixed.example.com=93.184.215.14", "mixed.example.com=127.0.0.1"])
    with pytest.raises(InvalidInput):
        check_registration("https://mixed.example.com/hook", DEFAULT, resolver)


def test_public_addresses_and_names_pass() -> None:
    resolver = StaticHosts(["hooks.example.com=93.184.215.14"])
    assert check_registration("https://hooks.example.com/x", DEFAULT, resolver).port == 443
    assert check_registration("https://93.184.215.14:8443/x", DEFAULT, NoDns()).port == 8443
    assert check_registration("https://[2606:4700::1111]/x", DEFAULT, NoDns()).host


def test_allow_listed_networks_pass_and_nothing_else() -> None:
    policy = AddressPolicy.of([ipaddress.ip_network("127.0.0.0/8")])
    assert check_registration("https://127.0.0.1:9/x", policy, NoDns())
    assert check_registration("https://[::ffff:127.0.0.1]:9/x", policy, NoDns())
    with pytest.raises(InvalidInput):
        check_registration("https://10.0.0.1/x", policy, NoDns())


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://hooks.example.com/x", "https://"),
        ("HTTP://hooks.example.com/x", "https://"),
        ("ftp://hooks.example.com/x", "https://"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
        ("https://hooks.example.com/x#frag", "fragment"),
        ("https:///x", "no host"),
        ("https://hooks.example.com:99999/x", "valid URL"),
        ("https://hooks.exa mple.com/x", "spaces"),
        ("https://bücher.example/x", "punycode"),
    ],
)
def test_malformed_or_unsafe_urls_get_a_clear_error(url: str, words: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_url(url)
    assert words in refused.value.detail


def test_http_is_refused_with_a_stable_reason() -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_url("http://hooks.example.com/x")
    assert refused.value.extra["reason"] == "https_required"
    assert "sandbox" in refused.value.detail


def test_ipv4_literals_decode_like_inet_aton() -> None:
    assert str(parse_ip_literal("127.1")) == "127.0.0.1"
    assert str(parse_ip_literal("0x7f.1")) == "127.0.0.1"
    assert str(parse_ip_literal("10.0x10.1")) == "10.16.0.1"
    assert parse_ip_literal("256.1.1.1") is None
    assert parse_ip_literal("hooks.example.com") is None
    assert parse_ip_literal("1.2.3.4.5") is None
