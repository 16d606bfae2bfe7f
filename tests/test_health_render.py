"""Renderers of a HealthReport: JSON schema, Prometheus exposition, Nagios plugin output, text."""

from __future__ import annotations

import errno
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from matokit import __version__
from matokit.cli.health_render import (
    prometheus_exposition,
    render_json,
    render_nagios,
    render_prometheus,
    render_text,
    to_json_dict,
)
from matokit.health import CheckResult, HealthReport, Status, Thresholds

NOW = 1_790_000_000.0


def _report(*checks: CheckResult, status: Status | None = None) -> HealthReport:
    from matokit.health import worst

    return HealthReport(
        status=status if status is not None else worst(c.status for c in checks),
        checks=tuple(checks),
        generated_at=NOW,
        duration_s=0.42,
        thresholds=Thresholds(),
        profile="default",
        url="https://analytics.example.org/",
        site_id=1,
    )


def _healthy() -> HealthReport:
    return _report(
        CheckResult("config", Status.OK, "profile default: ok", duration_s=0.001),
        CheckResult(
            "api",
            Status.OK,
            "Matomo 5.11.2 answered in 0.12 s",
            metrics={"latency_seconds": 0.1234},
            duration_s=0.125,
            info={"matomo_version": "5.11.2"},
        ),
        CheckResult(
            "queue",
            Status.OK,
            "3 queued, oldest 2m, 0 dead",
            metrics={
                "depth": 3,
                "oldest_age_seconds": 120.5,
                "dead_letters": 0,
                "unconfirmed": 1,
                "unattributed": 0,
                "last_flush_timestamp_seconds": NOW - 60,
            },
            duration_s=0.01,
        ),
        CheckResult("cache", Status.OK, "cache opens", metrics={"size_bytes": 4096}),
    )


def _families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge", family.name
        assert family.documentation, f"{family.name} has no HELP"
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def test_prometheus_exposition_parses_and_carries_every_required_metric() -> None:
    text = render_prometheus(_healthy())
    metrics = _families(text)
    for name in (
        "matokit_up",
        "matokit_check_status",
        "matokit_check_duration_seconds",
        "matokit_api_latency_seconds",
        "matokit_queue_depth",
        "matokit_queue_oldest_age_seconds",
        "matokit_queue_dead_letters",
        "matokit_queue_unconfirmed",
        "matokit_last_flush_timestamp_seconds",
        "matokit_health_run_timestamp_seconds",
    ):
        assert name in metrics, name
    assert metrics["matokit_up"] == [({"profile": "default"}, 1.0)]
    statuses = {labels["check"]: value for labels, value in metrics["matokit_check_status"]}
    assert statuses == {"config": 0, "api": 0, "queue": 0, "cache": 0}
    assert metrics["matokit_api_latency_seconds"][0][1] == pytest.approx(0.1234)
    assert metrics["matokit_queue_depth"][0][1] == 3
    assert metrics["matokit_queue_oldest_age_seconds"][0][1] == pytest.approx(120.5)
    assert metrics["matokit_last_flush_timestamp_seconds"][0][1] == pytest.approx(NOW - 60)
    assert metrics["matokit_health_run_timestamp_seconds"][0][1] == pytest.approx(NOW)
    assert metrics["matokit_matomo_info"] == [({"profile": "default", "version": "5.11.2"}, 1.0)]


def test_prometheus_has_one_help_and_type_per_family_and_ends_with_newline() -> None:
    text = render_prometheus(_healthy())
    assert text.endswith("\n")
    helps = re.findall(r"^# HELP (\S+) ", text, re.MULTILINE)
    types = re.findall(r"^# TYPE (\S+) gauge$", text, re.MULTILINE)
    assert helps == types
    assert len(helps) == len(set(helps))


@pytest.mark.parametrize(
    ("status", "up"),
    [(Status.OK, 1), (Status.WARNING, 1), (Status.CRITICAL, 0), (Status.UNKNOWN, 0)],
)
def test_prometheus_up_follows_the_overall_status(status: Status, up: int) -> None:
    report = _report(CheckResult("api", status, "x"))
    metrics = _families(render_prometheus(report))
    assert metrics["matokit_up"][0][1] == up
    assert metrics["matokit_health_status"][0][1] == int(status)
    # A key the result lacks is still a series (the renderer walks the series table).
    assert math.isnan(metrics["matokit_api_latency_seconds"][0][1])


def test_prometheus_escapes_label_values() -> None:
    report = HealthReport(
        status=Status.OK,
        checks=(CheckResult("api", Status.OK, "ok", info={"matomo_version": 'a"b\\c\nd'}),),
        generated_at=NOW,
        duration_s=0.1,
        thresholds=Thresholds(),
        profile="prod",
    )
    metrics = _families(render_prometheus(report))
    assert metrics["matokit_matomo_info"][0][0]["version"] == 'a"b\\c\nd'


Exposed = list[tuple[str, str, str, list[tuple[dict[str, str], float | str]]]]


def _as_listed(families: Iterable[Metric]) -> Exposed:
    """(name, HELP, TYPE, [(labels, value)]) per family in order; NaN as "NaN" (comparable)."""
    return [
        (
            f.name,
            f.documentation,
            f.type,
            [(dict(s.labels), "NaN" if math.isnan(s.value) else s.value) for s in f.samples],
        )
        for f in families
    ]


def _exposed(text: str) -> Exposed:
    """Every family of a Prometheus text exposition as parsed, in exposition order."""
    return _as_listed(text_string_to_metric_families(text))


def test_prometheus_families_help_labels_and_values_are_exactly_these() -> None:
    # Pins what a scraper sees (names, HELP, TYPE, label sets, values, family order), so the
    # exposition cannot drift whoever formats it; a metric unknown to the series table gets a
    # sanitised name matokit_<check>_<key>.
    report = _report(
        CheckResult("config", Status.OK, "ok", duration_s=0.001),
        CheckResult(
            "api",
            Status.WARNING,
            "slow",
            metrics={"latency_seconds": 2.5, "reachable": 1, "token_accepted": 1},
            duration_s=2.501,
            info={"matomo_version": "5.11.2"},
        ),
        CheckResult("replay-access", Status.OK, "ok", metrics={"admin_access": 0}, duration_s=0.2),
        CheckResult("tracking-failures", Status.OK, "ok", metrics={"failures": 2, "odd-key.x": 7}),
    )
    profile = {"profile": "default"}
    checks = ("config", "api", "replay-access", "tracking-failures")
    statuses = (0, 1, 0, 0)
    durations = (0.001, 2.501, 0.2, 0.0)
    status_help = "Status of one check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."
    assert _exposed(render_prometheus(report)) == [
        (
            "matokit_up",
            "1 when the last health run was OK or WARNING, 0 when CRITICAL or UNKNOWN.",
            "gauge",
            [(profile, 1.0)],
        ),
        (
            "matokit_health_status",
            "Overall health: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
            "gauge",
            [(profile, 1.0)],
        ),
        (
            "matokit_check_status",
            status_help,
            "gauge",
            [({**profile, "check": c}, s) for c, s in zip(checks, statuses, strict=True)],
        ),
        (
            "matokit_check_duration_seconds",
            "Time one check took.",
            "gauge",
            [({**profile, "check": c}, d) for c, d in zip(checks, durations, strict=True)],
        ),
        (
            "matokit_api_latency_seconds",
            "Time Matomo took to answer API.getMatomoVersion.",
            "gauge",
            [(profile, 2.5)],
        ),
        (
            "matokit_api_reachable",
            "1 when Matomo's API answered as Matomo (even to refuse the token), 0 when it could "
            "not be reached or did not answer in time or as Matomo (connection, TLS, HTTP 5xx, "
            "maintenance, a proxy's page); NaN when it was not asked.",
            "gauge",
            [(profile, 1.0)],
        ),
        (
            "matokit_api_token_accepted",
            "1 when Matomo accepted the token, 0 when it refused it (now or within the "
            "cool-down) or blocks this host after failed logins; NaN when not learnt.",
            "gauge",
            [(profile, 1.0)],
        ),
        (
            "matokit_replay_admin_access",
            "1 when the token can replay hits older than 24 h on the site, 0 when it cannot.",
            "gauge",
            [(profile, 0.0)],
        ),
        (
            "matokit_tracking_failures",
            "Tracking failures Matomo reports (kept about two days).",
            "gauge",
            [(profile, 2.0)],
        ),
        (
            "matokit_tracking_failures_odd_key_x",
            "odd-key.x reported by the tracking-failures check.",
            "gauge",
            [(profile, 7.0)],
        ),
        (
            "matokit_matomo_info",
            "Matomo's version as reported by API.getMatomoVersion; the version label is "
            "unknown when Matomo did not answer.",
            "gauge",
            [({**profile, "version": "5.11.2"}, 1.0)],
        ),
        (
            "matokit_build_info",
            "MatoKit's version.",
            "gauge",
            [({**profile, "version": __version__}, 1.0)],
        ),
        (
            "matokit_health_run_duration_seconds",
            "Time the whole health run took.",
            "gauge",
            [(profile, 0.42)],
        ),
        (
            "matokit_health_run_timestamp_seconds",
            "Unix time the health run started.",
            "gauge",
            [(profile, NOW)],
        ),
    ]


def test_every_series_of_a_check_is_exposed_in_table_order_nan_when_not_reported() -> None:
    from matokit.health.series import CHECK_SERIES

    report = _report(
        CheckResult("queue", Status.OK, "ok", metrics={"depth": 3, "file_size_bytes": 8192}),
        CheckResult("api", Status.CRITICAL, "Cannot connect"),
    )
    families = _exposed(render_prometheus(report))
    names = [name for name, *_ in families]
    queue = [s.name for s in CHECK_SERIES["queue"]]
    assert names[names.index(queue[0]) : names.index(queue[0]) + len(queue)] == queue
    values = {name: samples for name, _, _, samples in families}
    assert values["matokit_queue_depth"] == [({"profile": "default"}, 3.0)]
    assert values["matokit_queue_file_size_bytes"] == [({"profile": "default"}, 8192.0)]
    assert values["matokit_last_flush_timestamp_seconds"] == [({"profile": "default"}, "NaN")]
    assert values["matokit_queue_possible_duplicates"] == [({"profile": "default"}, "NaN")]
    # The api check learnt no version: the info series stays, labelled "unknown".
    assert values["matokit_matomo_info"] == [({"profile": "default", "version": "unknown"}, 1.0)]


def test_prometheus_labels_a_report_without_a_profile_unknown() -> None:
    report = HealthReport(
        status=Status.CRITICAL,
        checks=(CheckResult("config", Status.CRITICAL, "no url"),),
        generated_at=NOW,
        duration_s=0.1,
        thresholds=Thresholds(),
    )
    metrics = _families(render_prometheus(report))
    assert metrics["matokit_up"] == [({"profile": "unknown"}, 0.0)]


TRICKY = 'a"b\\c\nd'  # a quote, a backslash and a newline


def _tricky_report() -> HealthReport:
    return HealthReport(
        status=Status.OK,
        checks=(
            CheckResult(
                "api", Status.OK, "ok", metrics={"x\\y\nz": 1}, info={"matomo_version": TRICKY}
            ),
        ),
        generated_at=NOW,
        duration_s=0.1,
        thresholds=Thresholds(),
        profile='p"q\\r\ns',
    )


def test_prometheus_escapes_quotes_backslashes_and_newlines_in_labels_and_help() -> None:
    text = render_prometheus(_tricky_report())
    lines = text.splitlines()
    # A raw newline would start a line the scraper cannot parse.
    assert all(line.startswith(("# HELP ", "# TYPE ", "matokit_")) for line in lines), text
    info = next(line for line in lines if line.startswith("matokit_matomo_info{"))
    assert 'version="a\\"b\\\\c\\nd"' in info
    assert 'profile="p\\"q\\\\r\\ns"' in info
    assert "# HELP matokit_api_x_y_z x\\\\y\\nz reported by the api check." in lines
    metrics = _families(text)
    assert metrics["matokit_matomo_info"][0][0] == {"profile": 'p"q\\r\ns', "version": TRICKY}


PROMETHEUS_2_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROMETHEUS_3_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;"
    "escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, "text/plain; version=0.0.4; charset=utf-8"),
        ("*/*", "text/plain; version=0.0.4; charset=utf-8"),
        ("text/plain;version=0.0.4;q=0.3", "text/plain; version=0.0.4; charset=utf-8"),
        # OpenMetrics before 1.0.0 is not a format prometheus_client writes.
        ("application/openmetrics-text;version=0.0.1", "text/plain; version=0.0.4; charset=utf-8"),
        ("application/openmetrics-text", "application/openmetrics-text; version=1.0.0"),
        (
            "application/openmetrics-text; version=1.0.0",
            "application/openmetrics-text; version=1.0.0",
        ),
        (PROMETHEUS_2_ACCEPT, "application/openmetrics-text; version=1.0.0"),
        (PROMETHEUS_3_ACCEPT, "application/openmetrics-text; version=1.0.0"),
    ],
)
def test_scrape_gets_openmetrics_when_its_accept_header_asks_for_it(
    accept: str | None, content_type: str
) -> None:
    body, got_type = prometheus_exposition(_tricky_report(), accept)
    text = body.decode("utf-8")
    assert got_type.startswith(content_type)
    expected = _exposed(render_prometheus(_tricky_report()))
    if content_type.startswith("application/openmetrics-text"):
        assert text.endswith("\n# EOF\n")
        # The strict OpenMetrics parser.
        assert _as_listed(openmetrics_families(text)) == expected
    else:
        assert "# EOF" not in text
        assert _exposed(text) == expected


def test_json_document_is_versioned_and_complete() -> None:
    data = json.loads(render_json(_healthy()))
    assert data["schema"] == "matokit.health/1"
    assert data["status"] == "OK"
    assert data["exit_code"] == 0
    assert data["generated_at"] == "2026-09-21T14:13:20Z"
    assert [c["name"] for c in data["checks"]] == ["config", "api", "queue", "cache"]
    api = data["checks"][1]
    assert api == {
        "name": "api",
        "status": "OK",
        "summary": "Matomo 5.11.2 answered in 0.12 s",
        "hint": None,
        "duration_s": 0.125,
        "metrics": {"latency_seconds": 0.1234},
        "info": {"matomo_version": "5.11.2"},
    }
    assert data["thresholds"]["crit_queue_age_s"] == 6 * 3600


def test_json_integral_metrics_are_integers() -> None:
    data = to_json_dict(_healthy())
    assert data["checks"][2]["metrics"]["depth"] == 3
    assert isinstance(data["checks"][2]["metrics"]["depth"], int)


# --- Nagios: https://www.monitoring-plugins.org/doc/guidelines.html#AEN200 -------------------

_PERF = re.compile(
    r"^'(?P<label>[^'=]+)'=(?P<value>-?\d+(\.\d+)?)(?P<uom>s|%|B|KB|MB|TB|c)?"
    r"(;(?P<warn>-?\d*(\.\d+)?)?)?(;(?P<crit>-?\d*(\.\d+)?)?)?(;(?P<min>-?\d*(\.\d+)?)?)?"
    r"(;(?P<max>-?\d*(\.\d+)?)?)?$"
)


def _nagios_parts(text: str) -> tuple[str, str, list[str], list[str]]:
    lines = text.rstrip("\n").split("\n")
    first = lines[0]
    assert first.count("|") <= 1
    head, _, perf = first.partition(" | ")
    status_text = head.split(" - ", 1)[0]
    return status_text, head, perf.split(" ") if perf else [], lines[1:]


def test_nagios_first_line_status_summary_and_valid_perfdata() -> None:
    status_text, head, perf, long_lines = _nagios_parts(render_nagios(_healthy()))
    assert status_text == "MATOKIT OK"
    assert head == "MATOKIT OK - 4 checks OK (Matomo 5.11.2)"
    for item in perf:
        assert _PERF.match(item), item
    labels = {item.split("=")[0].strip("'"): item for item in perf}
    assert labels["api_latency"] == "'api_latency'=0.1234s;2;5;0"
    assert labels["queue_depth"] == "'queue_depth'=3;1000;10000;0"
    assert labels["queue_oldest_age"] == "'queue_oldest_age'=120.5s;3600;21600;0"
    assert labels["cache_size"] == "'cache_size'=4096B;;;0"
    assert long_lines[0].startswith("[OK] ")
    assert len(long_lines) == 4


def test_nagios_lists_the_worst_checks_first_and_strips_pipes() -> None:
    report = _report(
        CheckResult("config", Status.OK, "fine"),
        CheckResult("queue", Status.WARNING, "2 dead letter(s) | oops"),
        CheckResult("api", Status.CRITICAL, "token rejected at 2026-01-01 00:00:00 UTC"),
        CheckResult("site", Status.UNKNOWN, "did not finish within 2 s (stage: x)"),
    )
    text = render_nagios(report)
    status_text, head, perf, long_lines = _nagios_parts(text)
    assert status_text == "MATOKIT CRITICAL"
    assert head.startswith("MATOKIT CRITICAL - api CRITICAL: token rejected")
    assert head.index("site UNKNOWN") < head.index("queue WARNING")
    assert "oops" in head and "| oops" not in text
    assert [line.split("]")[0] for line in long_lines] == [
        "[CRITICAL",
        "[UNKNOWN",
        "[WARNING",
        "[OK",
    ]
    assert all("|" not in line for line in long_lines)
    assert perf == ["'duration'=0.42s;;;0"]


def test_nagios_collapses_checks_skipped_after_the_api_failure() -> None:
    report = _report(
        CheckResult("api", Status.CRITICAL, "Matomo is unavailable (HTTP 503)."),
        CheckResult("site", Status.UNKNOWN, "not checked: the api check failed"),
        CheckResult("replay-access", Status.UNKNOWN, "not checked: the api check failed"),
    )
    _, head, _, long_lines = _nagios_parts(render_nagios(report))
    assert head == (
        "MATOKIT CRITICAL - api CRITICAL: Matomo is unavailable (HTTP 503); "
        "not checked after the api failure: site, replay-access"
    )
    assert "[UNKNOWN] site: not checked: the api check failed" in long_lines


def test_text_table_names_every_check_status_and_hint() -> None:
    report = _report(
        CheckResult("api", Status.CRITICAL, "token rejected", hint="create a new token"),
        CheckResult("cache", Status.OK, "cache opens"),
    )
    text = render_text(report)
    assert "api" in text and "CRITICAL" in text and "token rejected" in text
    assert "overall: CRITICAL" in text
    assert "hint (api): create a new token" in text
    assert "\x1b[" not in text


# --- --output: atomic replacement ----------------------------------------------------------------


def test_write_atomic_replaces_whole_file_and_keeps_its_mode(tmp_path: Path) -> None:
    from matokit.cli.health import write_atomic

    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "matokit.prom"
    target.write_text("old\n")
    target.chmod(0o640)
    write_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["matokit.prom"]


def test_failed_write_leaves_the_old_file_untouched_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matokit.cli import health as health_cli

    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "matokit.prom"
    target.write_text("old\n")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(health_cli.os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        health_cli.write_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in target.parent.iterdir()] == ["matokit.prom"]


def test_health_exits_3_when_output_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from matokit.cli import health as health_cli
    from matokit.cli import run

    target = tmp_path / "matokit.prom"
    target.write_text("old\n")
    monkeypatch.setattr(
        health_cli.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error"))
    )
    code = run(["health", "--check", "cache", "--format", "prometheus", "--output", str(target)])
    assert code == 3
    err = capsys.readouterr().err
    assert f"matokit: error: cannot write {target}: I/O error; the old file is unchanged." in err
    assert target.read_text() == "old\n"


def test_a_metric_not_measured_keeps_its_series_null_nan_and_u() -> None:
    down = _report(
        CheckResult("api", Status.CRITICAL, "Cannot connect", metrics={"latency_seconds": None}),
        CheckResult("cache", Status.OK, "cache opens", metrics={"size_bytes": 4096}),
    )
    assert to_json_dict(down)["checks"][0]["metrics"] == {"latency_seconds": None}
    (labels, value), *_ = _families(render_prometheus(down))["matokit_api_latency_seconds"]
    assert labels == {"profile": "default"} and math.isnan(value)
    first = render_nagios(down).splitlines()[0]
    assert "'api_latency'=U;2;5;0" in first.split("|", 1)[1].split()
    assert "'cache_size'=4096B;;;0" in first
