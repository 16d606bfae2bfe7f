"""Access-log formats: every parser on hand-written fixtures, times from the line's own zone,
auto-detection, and the regex format's checks."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest

from matokit.accesslog import formats
from matokit.accesslog.formats import HEADER, LogRecord, RegexFormat, detect, unescape
from matokit.accesslog.times import any_time, clf_time, zone_offset
from matokit.errors import UsageError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "accesslog"


def utc(*parts: int) -> int:
    return calendar.timegm((*parts, 0, 0, 0))


def parsed(name: str, fmt: formats.LineFormat) -> list[LogRecord | None]:
    raw = (FIXTURES / name).read_bytes()
    lines = raw.decode("utf-8").replace("\r\n", "\n").split("\n")
    return [r for r in (fmt.parse(line) for line in lines if line) if r is not HEADER]


def fields(record: LogRecord | None) -> tuple[object, ...]:
    assert record is not None
    return (
        record.ip,
        record.userid,
        record.method,
        record.path,
        record.query,
        record.status,
        record.length,
        record.referrer,
        record.user_agent,
        record.host,
    )


def test_common_reads_ipv6_dash_fields_percent_encoding_and_zones() -> None:
    fmt = formats.common()
    first, second, third = parsed("common.log", fmt)
    assert fields(first) == (
        "127.0.0.1", "frank", "GET", "/apache_pb.gif", "", "200", "2326", "", "", None,
    )  # fmt: skip
    assert fields(second) == (
        "2001:db8::7", None, "GET", "/caf%C3%A9/menu", "lang=fr", "200", "-", "", "", None,
    )  # fmt: skip
    assert fields(third)[2:6] == ("POST", "/form", "", "302")
    assert first is not None and second is not None and third is not None
    # 13:55:36 at -0700 is 20:55:36 UTC; 22:55:36 at +0200 is the same instant; so is 20:55 UTC.
    assert fmt.timestamp(first) == utc(2026, 10, 10, 20, 55, 36)
    assert fmt.timestamp(second) == fmt.timestamp(first) == fmt.timestamp(third)


def test_combined_reads_escapes_utf8_and_empty_fields() -> None:
    fmt = formats.combined()
    records = parsed("combined.log", fmt)
    assert len(records) == 7
    assert fields(records[0]) == (
        "203.0.113.9", None, "GET", "/blog/hello-world", "utm_source=news&id=7", "200", "5120",
        "https://www.google.com/", "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0", None,
    )  # fmt: skip
    assert fields(records[1])[:7] == (
        "2001:db8:85a3::8a2e:370:7334", "alice", "GET", "/docs/manual.pdf", "", "206", "65536",
    )  # fmt: skip
    assert records[1] is not None and records[1].referrer == ""  # "-" is no referrer
    # Apache's \" inside the request and the user agent.
    assert fields(records[2])[3:5] == ("/search", 'q="quoted"')
    assert records[2] is not None and records[2].user_agent == 'agent with "quotes" inside'
    # Apache's \xHH escapes of UTF-8 bytes, in the path and the referrer.
    assert fields(records[3])[3] == "/café"
    assert records[3] is not None and records[3].referrer == "https://ref.example/ü"
    # UTF-8 written raw.
    assert fields(records[4])[3] == "/über/straße"
    # A request line that is no request: parsed, with no path (the filters skip it).
    assert records[5] is not None and records[5].path is None and records[5].status == "400"
    assert fields(records[6])[2:4] == ("HEAD", "/")
    times = [fmt.timestamp(r) for r in records if r is not None]
    assert times[0] == utc(2026, 11, 20, 8, 15, 2)
    assert times[2] == utc(2026, 11, 20, 8, 15, 4)  # +0000
    assert times[3] == utc(2026, 11, 20, 8, 15, 5)  # 03:15:05 -0500


def test_vhost_combined_takes_the_host_without_port_and_lower_case() -> None:
    fmt = formats.vhost_combined()
    records = parsed("vhost_combined.log", fmt)
    assert [r.host for r in records if r is not None] == [
        "www.example.com",
        "blog.example.org",
        "shop.example.net",
    ]
    assert fields(records[1])[0] == "2001:db8::1"
    assert records[2] is not None and records[2].user_agent == ""  # no agent fields at all


def test_nginx_json_takes_matomo_and_nginx_field_names() -> None:
    fmt = formats.NginxJsonFormat()
    first, second, third = parsed("nginx.json", fmt)
    assert fields(first) == (
        "203.0.113.9", None, "", "/news", "page=2", "200", "1024", "https://duckduckgo.com/",
        "Mozilla/5.0 (X11)", "www.example.com",
    )  # fmt: skip
    assert first is not None and first.gen_ms == pytest.approx(125.0)  # seconds, as Matomo's
    assert fields(second) == (
        "2001:db8::2", None, "GET", "/café", "x=1", "404", "0", "", "curl/8.4.0", "example.com",
    )  # fmt: skip
    # Nginx's default escaping: \xHH (UTF-8 bytes, quotes) is not JSON; it is read anyway.
    assert fields(third)[3] == "/café"
    assert third is not None and third.user_agent == 'Mozilla "quoted"'
    assert first is not None and second is not None
    assert fmt.timestamp(first) == utc(2026, 11, 20, 8, 15, 2)
    assert fmt.timestamp(second) == utc(2026, 11, 20, 8, 15, 3)
    assert fmt.timestamp(third) == utc(2026, 11, 20, 8, 15, 4)  # $time_local


def test_nginx_json_refuses_lines_without_time_or_path() -> None:
    fmt = formats.NginxJsonFormat()
    assert fmt.parse('{"ip": "1.2.3.4", "status": "200"}') is None
    assert fmt.parse("[1, 2]") is None
    assert fmt.parse("not json") is None


def test_w3c_follows_its_fields_directives_and_reads_utc() -> None:
    fmt = formats.W3cFormat()
    records = parsed("iis.log", fmt)
    assert len(records) == 3
    assert fields(records[0]) == (
        "203.0.113.9", None, "GET", "/default.aspx", "id=3", "200", "",
        "https://www.bing.com/", "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", None,
    )  # fmt: skip
    assert records[0] is not None and records[0].gen_ms == 46.0  # IIS: milliseconds
    assert fields(records[1])[:4] == ("2001:db8::9", "CORP\\bob", "GET", "/report.pdf")
    # The second #Fields: directive changes the columns from there on.
    assert fields(records[2])[3] == "/later"
    assert records[2] is not None and records[2].host == "intranet.example.com"
    assert records[0] is not None and fmt.timestamp(records[0]) == utc(2026, 11, 20, 8, 15, 2)
    # What a checkpoint keeps resumes the columns in force.
    resumed = formats.W3cFormat()
    resumed.restore(fmt.state())
    assert fields(resumed.parse("2026-11-20 08:16:00 192.0.2.2 GET /again 200 a.example"))[3] == (
        "/again"
    )


def test_w3c_lines_before_any_fields_directive_are_not_records() -> None:
    assert formats.W3cFormat().parse("2026-11-20 08:15:02 1.2.3.4 GET / 200") is None


def test_regex_format_with_named_groups_and_a_date_format() -> None:
    pattern = (
        r"(?P<date>\S+ \S+ \S+) \| (?P<ip>\S+) \| (?P<host>\S+) \| (?P<method>\S+) "
        r"(?P<path>\S+) \| (?P<status>\d+) \| (?P<length>\d+)"
    )
    fmt = RegexFormat(pattern, "%Y-%m-%d %H:%M:%S %z")
    first, second = parsed("custom.log", fmt)
    assert fields(first) == (
        "203.0.113.9", None, "GET", "/regex/page", "a=1", "200", "77", "", "",
        "www.example.com",
    )  # fmt: skip
    assert first is not None and fmt.timestamp(first) == utc(2026, 11, 20, 8, 15, 2)
    assert second is not None and second.status == "404"
    # Without --log-date-format the time is read as ISO 8601 with its zone.
    assert RegexFormat(pattern).timestamp(first) == utc(2026, 11, 20, 8, 15, 2)


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        (r"(?P<ip>\S+) (?P<path>\S+)", "lacks the named group(s) date, status"),
        (r"(?P<ip>\S+", "not a valid regular expression"),
    ],
)
def test_regex_format_refuses_patterns_it_cannot_use(pattern: str, problem: str) -> None:
    with pytest.raises(UsageError, match="--log-format-regex") as caught:
        RegexFormat(pattern)
    assert problem in caught.value.message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("common.log", "common"),
        ("combined.log", "combined"),
        ("vhost_combined.log", "vhost_combined"),
        ("nginx.json", "nginx_json"),
        ("iis.log", "w3c"),
    ],
)
def test_detection_names_each_fixture_format(name: str, expected: str) -> None:
    lines = (FIXTURES / name).read_text().splitlines()
    found = detect(lines)
    assert found is not None and found.name == expected


def test_detection_finds_nothing_in_text_that_is_no_log() -> None:
    assert detect(["hello world", "this is not a log"]) is None
    assert detect([]) is None


def test_detection_goes_by_most_lines_matching() -> None:
    combined = (FIXTURES / "combined.log").read_text().splitlines()
    common = (FIXTURES / "common.log").read_text().splitlines()
    found = detect(combined[:2] + common)
    assert found is not None and found.name == "common"  # 5 common lines beat 2 combined


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("01/Jan/2026:00:00:00 +0000", utc(2026, 1, 1, 0, 0, 0)),
        ("01/Jan/2026:00:30:00 +0530", utc(2025, 12, 31, 19, 0, 0)),
        ("29/Feb/2024:23:59:59 -1200", utc(2024, 3, 1, 11, 59, 59)),
    ],
)
def test_clf_times_use_the_line_zone(text: str, seconds: int) -> None:
    assert clf_time(text) == seconds


@pytest.mark.parametrize(
    "text", ["30/Feb/2026:00:00:00 +0000", "01/Foo/2026:00:00:00 +0000", "01/Jan/2026 00:00:00"]
)
def test_bad_clf_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        clf_time(text)


def test_other_time_forms() -> None:
    assert any_time("2026-11-20T09:15:02+01:00") == utc(2026, 11, 20, 8, 15, 2)
    assert any_time("2026-11-20T08:15:02Z") == utc(2026, 11, 20, 8, 15, 2)
    assert any_time("1795680902.123") == 1795680902
    assert any_time("2026-11-20 09:15:02", "+0100") == utc(2026, 11, 20, 8, 15, 2)
    assert zone_offset("-07:00") == -7 * 3600
    with pytest.raises(ValueError):
        zone_offset("+2500")


def test_unescape_undoes_apache_and_nginx_escapes() -> None:
    assert unescape(r"a\"b\\c") == 'a"b\\c'
    assert unescape(r"caf\xC3\xA9") == "café"
    assert unescape(r"bad \xFF byte") == "bad \ufffd byte"
