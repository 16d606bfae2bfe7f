"""The one Matomo base-URL normaliser and loopback test (matokit/urls.py)."""

from __future__ import annotations

import re

import pytest

from matokit.urls import endpoint, is_loopback, normalize_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://m.example", "https://m.example/"),
        ("https://m.example/", "https://m.example/"),
        (" https://m.example/analytics ", "https://m.example/analytics/"),
        ("https://m.example/index.php", "https://m.example/"),
        ("https://m.example/sub/matomo.php", "https://m.example/sub/"),
        ("http://127.0.0.1:8080/piwik.php", "http://127.0.0.1:8080/"),
        ("https://u:p@m.example/x/", "https://u:p@m.example/x/"),
    ],
)
def test_normalize_url(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("matomo.example", "is not an http(s) URL"),
        ("ftp://m.example/", "is not an http(s) URL"),
        ("https://", "is not an http(s) URL"),
        ("", "is not an http(s) URL"),
        ("https://m.example/?idsite=1", "must not have a query string or fragment"),
        ("https://m.example/#top", "must not have a query string or fragment"),
        ("https://m.example:99999/", "has an invalid port"),
    ],
)
def test_normalize_url_refuses(bad: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        normalize_url(bad)


def test_endpoint_joins_one_slash() -> None:
    assert endpoint("https://m.example/sub", "index.php") == "https://m.example/sub/index.php"
    assert endpoint("https://m.example/sub/", "matomo.php") == "https://m.example/sub/matomo.php"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("matomo.localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("localhost.example.com", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("listen", ["matomo.localhost:9464", "[::1]:9464", "127.0.0.2:0"])
def test_health_serve_listens_on_every_loopback_host(listen: str) -> None:
    from matokit.cli.health_serve import parse_listen

    assert parse_listen(listen, allow_remote=False)[1] in (0, 9464)


def test_health_serve_refuses_a_remote_host_without_allow_remote() -> None:
    from matokit.cli.health_serve import parse_listen
    from matokit.errors import UsageError

    with pytest.raises(UsageError, match="non-loopback"):
        parse_listen("0.0.0.0:9464", allow_remote=False)
