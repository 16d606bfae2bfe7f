"""What becomes a hit, rule by rule as tests/fixtures/log-importer-facts.md states Matomo's
importer counts; and the Tracking API parameters a kept line becomes."""

from __future__ import annotations

import pytest

from matokit.accesslog.filters import FilterOptions, Filters, Reason, Verdict, extension
from matokit.accesslog.formats import combined
from matokit.accesslog.hits import HitOptions, hit_params, query_without

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"


def line(
    path: str = "/", status: int = 200, agent: str = BROWSER, method: str = "GET", user: str = "-"
) -> str:
    return (
        f'203.0.113.9 - {user} [20/Nov/2026:09:15:02 +0100] "{method} {path} HTTP/1.1" '
        f'{status} 512 "https://ref.example/" "{agent}"'
    )


def verdict(text: str, **options: object) -> Reason | Verdict:
    record = combined().parse(text)
    assert record is not None
    return Filters(FilterOptions(**options)).check(record)  # type: ignore[arg-type]


def kind(result: Reason | Verdict) -> str:
    if isinstance(result, Reason):
        return str(result)
    return "download" if result.download else "pageview"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (line("/blog/post"), "pageview"),
        (line("/docs/manual.pdf"), "download"),
        (line("/files/archive.tar.gz?v=2"), "download"),  # the query is not the extension
        (line("/docs/api/v2.1/auth"), "pageview"),  # extension "1/auth"
        (line("/v1.2/app.JS"), "static"),  # case-insensitive
        (line("/sitemap.xml"), "static"),  # xml: a download extension, but static wins
        (line("/robots.txt"), "static"),  # robots.txt is static, other .txt files downloads
        (line("/notes.txt"), "download"),
        (line("/", status=304), "pageview"),  # 304 is not a redirect
        (line("/old", status=301), "redirect"),
        (line("/old", status=302), "redirect"),
        (line("/old", status=303), "redirect"),
        (line("/old", status=307), "redirect"),
        (line("/old", status=308), "redirect"),
        (line("/missing", status=404), "http_error"),
        (line("/broken", status=500), "http_error"),
        (line("/docs/manual.pdf", status=206), "download"),  # every range request counts
        (line("/", method="HEAD"), "pageview"),  # the method is ignored
        (line("/form", method="POST"), "pageview"),
        (line("/", agent="curl/8.4.0"), "bot"),  # curl is a bot ...
        (line("/", agent="Wget/1.21.4"), "pageview"),  # ... Wget is not,
        (line("/", agent="python-requests/2.31"), "pageview"),  # nor python-requests
        (line("/", agent="Mozilla/5.0 (compatible; Googlebot/2.1)"), "bot"),
        (line("/", agent="Mozilla/5.0 (compatible; YandexBot/3.0)"), "bot"),
        # Filters stop at the first refusal, in Matomo's (alphabetical) order: a bot's 404 is
        # an HTTP error, a bot's static file is static.
        (line("/missing", status=404, agent="Googlebot/2.1"), "http_error"),
        (line("/logo.png", agent="Googlebot/2.1"), "static"),
        (line("/logo.png", status=404), "http_error"),
        ('1.2.3.4 - - [20/Nov/2026:09:15:02 +0100] "-" 400 0 "-" "-"', "invalid_request"),
    ],
)
def test_the_importers_rules(text: str, expected: str) -> None:
    assert kind(verdict(text)) == expected


@pytest.mark.parametrize(
    ("text", "option", "expected"),
    [
        (line("/logo.png"), "enable_static", "download"),  # kept static files are downloads
        (line("/", agent="curl/8"), "enable_bots", "pageview"),
        (line("/x", status=404), "enable_http_errors", "pageview"),
        (line("/x", status=301), "enable_http_redirects", "pageview"),
    ],
)
def test_enable_options_keep_what_is_skipped_by_default(
    text: str, option: str, expected: str
) -> None:
    assert kind(verdict(text, **{option: True})) == expected


def test_exclude_path_and_include_host_are_globs() -> None:
    assert verdict(line("/admin/users"), exclude_paths=("/admin/*",)) is Reason.EXCLUDED
    assert kind(verdict(line("/blog"), exclude_paths=("/admin/*",))) == "pageview"
    vhost = '{host} 1.2.3.4 - - [20/Nov/2026:09:15:02 +0100] "GET / HTTP/1.1" 200 5 "-" "UA"'
    from matokit.accesslog.formats import vhost_combined

    keep = Filters(FilterOptions(include_hosts=("*.Example.com",)))
    ours = vhost_combined().parse(vhost.format(host="www.example.com"))
    theirs = vhost_combined().parse(vhost.format(host="other.net"))
    assert ours is not None and theirs is not None
    assert isinstance(keep.check(ours), Verdict)
    assert keep.check(theirs) is Reason.HOST


def test_extension_is_what_follows_the_last_dot() -> None:
    assert extension("/docs/api/v2.1/auth") == "1/auth"
    assert extension("/a/b.TAR.GZ") == "gz"


def params(text: str, *, host: str | None = None, **options: object) -> dict[str, str]:
    record = combined().parse(text)
    assert record is not None
    record.host = host
    found = Filters(FilterOptions(**{k: v for k, v in options.items() if k.startswith("enable")}))
    result = found.check(record)  # type: ignore[arg-type]
    assert isinstance(result, Verdict)
    hit_options = {k: v for k, v in options.items() if not k.startswith("enable")}
    return hit_params(
        record,
        site=3,
        when=1795680902,
        base="https://www.example.com" if host is None else f"https://{host}",
        verdict=result,
        key="0123456789abcdef" * 2,
        options=HitOptions(**hit_options),  # type: ignore[arg-type]
    )


def test_a_pageview_carries_what_matomos_importer_sends() -> None:
    got = params(line("/blog/post?id=7", user="alice"))
    assert got == {
        "idsite": "3",
        "rec": "1",
        "apiv": "1",
        "url": "https://www.example.com/blog/post?id=7",
        "urlref": "https://ref.example/",
        "cip": "203.0.113.9",
        "ua": BROWSER,
        "cdt": "1795680902",
        "uid": "alice",  # the logged user name is Matomo's user id
        "bw_bytes": "512",
        "dp": "1",
        "rand": str(0x01234567),
    }


def test_a_download_also_carries_download_and_a_line_host_makes_the_url() -> None:
    got = params(line("/docs/manual.pdf"), host="files.example.org")
    assert got["download"] == got["url"] == "https://files.example.org/docs/manual.pdf"


def test_query_stripping() -> None:
    text = line("/p?utm_source=x&id=7&utm_medium=y")
    assert params(text, strip_query=True)["url"] == "https://www.example.com/p"
    stripped = params(text, strip_params=frozenset({"utm_source", "utm_medium"}))
    assert stripped["url"] == "https://www.example.com/p?id=7"
    assert query_without("a=1&b", frozenset({"b"})) == "a=1"


def test_kept_errors_get_matomos_title_and_kept_bots_bots_1() -> None:
    got = params(line("/missing", status=404), enable_http_errors=True)
    assert got["action_name"] == (
        "404/URL = https%3A%2F%2Fwww.example.com%2Fmissing/From = https%3A%2F%2Fref.example%2F"
    )
    bot = params(line("/", agent="curl/8"), enable_bots=True, bots=True)
    assert bot["bots"] == "1"
