"""The health checks against the fake Matomo, run in-process (one check per behaviour)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from matokit.config import Settings, resolve
from matokit.errors import UsageError
from matokit.health import (
    CHECKS,
    STANDARD_CHECKS,
    CachedHealth,
    Check,
    CheckResult,
    HealthReport,
    Status,
    ThresholdError,
    Thresholds,
    parse_checks,
    run_checks,
    run_health,
    thresholds_from,
    worst,
)
from matokit.health.queue import flush_stopped_on_auth
from matokit.journal import Journal, NewHit
from tests.fakematomo import ADMIN_TOKEN, SUPERUSER_TOKEN, VIEW_TOKEN, FakeMatomo, Fault
from tests.fakematomo.replies import LOGIN_HTML, proxy_page

BAD_TOKEN = "0badc0de" * 4


def _loader(fake: FakeMatomo, token: str | None = SUPERUSER_TOKEN, **flags: str) -> Callable:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MATOMO_", "MATOKIT_"))}
    if token is not None:
        env["MATOMO_TOKEN"] = token
    given = {f"--{k}": v for k, v in flags.items()}
    merged = {"--url": given.get("--url") or fake.url, "--site": "1", **given}
    merged = {k: v for k, v in merged.items() if v != ""}
    return lambda: resolve(merged, env=env)


def _run(
    fake: FakeMatomo,
    token: str | None = SUPERUSER_TOKEN,
    *,
    checks: tuple[str, ...] = CHECKS,
    thresholds: Thresholds | None = None,
    max_time: float = 10.0,
    **flags: str,
) -> HealthReport:
    return run_health(
        _loader(fake, token, **flags), checks=checks, thresholds=thresholds, max_time=max_time
    )


def _by_name(report: HealthReport) -> dict[str, CheckResult]:
    return {c.name: c for c in report.checks}


def _token_requests(fake: FakeMatomo, token: str) -> list[str]:
    return [r.path + "?" + r.query for r in fake.requests if token.encode() in r.body]


def _settings(fake: FakeMatomo) -> Settings:
    return _loader(fake)()


def _journal_with(settings: Settings, *ages: float, now: float | None = None) -> Journal:
    now = time.time() if now is None else now
    journal = Journal(settings.journal_path)
    journal.enqueue(
        NewHit(key=f"k{i}", params={"idsite": "1", "url": "https://x/"}, created_at=now - age)
        for i, age in enumerate(ages)
    )
    return journal


# --- the whole run -----------------------------------------------------------------------------


def test_superuser_token_makes_every_check_ok(fake_matomo: FakeMatomo) -> None:
    report = _run(fake_matomo)
    assert report.status is Status.OK, report
    assert [c.name for c in report.checks] == list(CHECKS)
    assert all(c.status is Status.OK for c in report.checks), report.checks
    assert report.profile == "default" and report.site_id == 1


def test_every_api_method_is_called_once_and_the_token_never_in_a_url(
    fake_matomo: FakeMatomo,
) -> None:
    _run(fake_matomo)
    methods = sorted(r.query for r in fake_matomo.requests if r.path.endswith("index.php"))
    assert len(methods) == 4
    assert len(set(methods)) == 4
    assert all(
        SUPERUSER_TOKEN not in r.query and SUPERUSER_TOKEN not in r.path
        for r in fake_matomo.requests
    )


def test_check_option_runs_only_the_chosen_checks(fake_matomo: FakeMatomo) -> None:
    report = _run(fake_matomo, checks=("api",))
    assert [c.name for c in report.checks] == ["api"]
    assert len(fake_matomo.requests) == 1


def test_parse_checks_keeps_canonical_order_and_refuses_unknown_names() -> None:
    assert parse_checks("queue, api") == ("api", "queue")
    assert parse_checks(None) == CHECKS
    assert parse_checks("all") == CHECKS
    with pytest.raises(UsageError, match="Unknown check 'nope'"):
        parse_checks("api,nope")


@pytest.mark.parametrize("text", [",", " , ,", ""])
def test_naming_no_check_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="names no check"):
        parse_checks(text)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], Status.OK),
        ([Status.OK, Status.WARNING], Status.WARNING),
        ([Status.WARNING, Status.UNKNOWN], Status.UNKNOWN),
        ([Status.UNKNOWN, Status.CRITICAL], Status.CRITICAL),
        ([Status.CRITICAL, Status.WARNING, Status.OK], Status.CRITICAL),
    ],
)
def test_worst_ranks_critical_over_unknown_over_warning(
    statuses: list[Status], expected: Status
) -> None:
    assert worst(statuses) is expected


def test_thresholds_refuse_a_warning_above_the_critical_limit() -> None:
    # The library names the limits by field; the CLI words them as flags (tests/e2e).
    with pytest.raises(UsageError, match="warn_queue_age") as info:
        Thresholds(warn_queue_age=7200, crit_queue_age=3600)
    assert info.value.message == "warn_queue_age (2h) is above crit_queue_age (1h)."
    assert isinstance(info.value, ThresholdError)
    assert info.value.describe(lambda n: "--" + n.replace("_", "-"))[0] == (
        "--warn-queue-age (2h) is above --crit-queue-age (1h)."
    )
    with pytest.raises(UsageError, match="warn_queue_age"):
        thresholds_from({"warn_queue_age": 7200, "crit_queue_age": 3600})  # both given


@pytest.mark.parametrize(
    ("given", "moved", "note"),
    [
        (
            {"crit_queue_age": 1.0},
            {"warn_queue_age": 1.0},
            "--crit-queue-age 1s is below the default --warn-queue-age (1h): "
            "--warn-queue-age is 1s too.",
        ),
        (
            {"warn_queue_age": 86400.0},
            {"crit_queue_age": 86400.0},
            "--warn-queue-age 24h is above the default --crit-queue-age (6h): "
            "--crit-queue-age is 24h too.",
        ),
        (
            {"crit_latency": 0.5},
            {"warn_latency": 0.5},
            "--crit-latency 0.5s is below the default --warn-latency (2s): "
            "--warn-latency is 0.5s too.",
        ),
        (
            {"warn_queue_depth": 50000.0},
            {"crit_queue_depth": 50000.0},
            "--warn-queue-depth 50000 is above the default --crit-queue-depth (10000): "
            "--crit-queue-depth is 50000 too.",
        ),
    ],
)
def test_a_threshold_given_alone_moves_the_other_default_and_says_so(
    given: dict[str, float], moved: dict[str, float], note: str
) -> None:
    thresholds, notes = thresholds_from(given)
    for name, value in {**given, **moved}.items():
        assert getattr(thresholds, name) == value
    assert [n.describe(lambda n: "--" + n.replace("_", "-")) for n in notes] == [note]
    assert "--" not in notes[0].describe()  # the library itself names no flag


def test_a_threshold_that_does_not_cross_the_other_default_moves_nothing() -> None:
    thresholds, notes = thresholds_from({"crit_queue_age": 7200.0, "warn_latency": 1.0})
    assert (thresholds.warn_queue_age, thresholds.crit_latency) == (3600.0, 5.0)
    assert notes == []


# --- config ------------------------------------------------------------------------------------


def test_config_without_url_is_critical_and_network_checks_do_not_run(
    fake_matomo: FakeMatomo,
) -> None:
    report = _run(fake_matomo, url="")
    checks = _by_name(report)
    assert checks["config"].status is Status.CRITICAL
    assert "No Matomo URL" in checks["config"].summary
    assert checks["config"].hint
    assert checks["api"].status is Status.UNKNOWN
    assert report.status is Status.CRITICAL
    assert fake_matomo.requests == []


def test_without_the_config_check_a_missing_token_is_critical_in_api(
    fake_matomo: FakeMatomo,
) -> None:
    api = _run(fake_matomo, token=None, checks=("api",)).checks[0]
    assert api.status is Status.CRITICAL
    assert api.summary.startswith("not checked: No Matomo token is configured")
    with_config = _by_name(_run(fake_matomo, token=None, checks=("config", "api")))
    assert with_config["config"].status is Status.CRITICAL
    assert with_config["api"].status is Status.UNKNOWN
    assert fake_matomo.requests == []


def test_credentials_in_the_url_never_reach_the_report(fake_matomo: FakeMatomo) -> None:
    url = f"http://monitor:s3cret-pass@127.0.0.1:{fake_matomo.port}/"
    report = _run(fake_matomo, checks=("config",), url=url)
    assert report.url == f"http://127.0.0.1:{fake_matomo.port}/"
    assert "s3cret-pass" not in repr(report)


def test_unreadable_config_file_is_critical_with_the_parsers_message(
    fake_matomo: FakeMatomo, tmp_path: Path
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[profiles.default\nurl = 1\n")
    report = _run(fake_matomo, config=str(config))
    checks = _by_name(report)
    assert checks["config"].status is Status.CRITICAL
    assert "not valid TOML" in checks["config"].summary
    assert {c.status for c in report.checks[1:]} == {Status.UNKNOWN}


def test_token_file_readable_by_others_is_critical(fake_matomo: FakeMatomo, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(SUPERUSER_TOKEN + "\n")
    token_file.chmod(0o644)
    report = _run(fake_matomo, token=None, checks=("config",), **{"token-file": str(token_file)})
    config = report.checks[0]
    assert config.status is Status.CRITICAL
    assert "accessible by other users" in config.summary
    assert f"chmod 600 {token_file}" in config.summary


def test_missing_site_id_warns_and_site_checks_are_unknown(fake_matomo: FakeMatomo) -> None:
    report = _run(fake_matomo, site="", checks=("config", "site", "tracking"))
    checks = _by_name(report)
    assert checks["config"].status is Status.WARNING
    assert checks["site"].status is Status.UNKNOWN
    assert checks["site"].summary == "not checked: no site id is configured"
    assert checks["tracking"].status is Status.UNKNOWN


def test_data_directory_open_to_others_warns(fake_matomo: FakeMatomo) -> None:
    settings = _settings(fake_matomo)
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True)
    data_dir.chmod(0o755)
    report = _run(fake_matomo, checks=("config",))
    assert report.checks[0].status is Status.WARNING
    assert "accessible by other users (mode 0755)" in report.checks[0].summary
    assert report.checks[0].hint == f"Run: chmod 700 {data_dir}"


# --- api ---------------------------------------------------------------------------------------


def test_api_reports_version_and_latency(fake_matomo: FakeMatomo) -> None:
    api = _run(fake_matomo, checks=("api",)).checks[0]
    assert api.status is Status.OK
    assert api.summary.startswith("Matomo 5.11.2 answered in ")
    assert api.info == {"matomo_version": "5.11.2"}
    assert 0 < api.metrics["latency_seconds"] < 1


@pytest.mark.parametrize(
    ("warn", "crit", "expected"),
    [(1.0, 2.0, Status.OK), (0.1, 2.0, Status.WARNING), (0.05, 0.1, Status.CRITICAL)],
)
def test_api_latency_thresholds(
    fake_matomo: FakeMatomo, warn: float, crit: float, expected: Status
) -> None:
    fake_matomo.add_fault(Fault(endpoint="api", latency=0.2))
    limits = Thresholds(warn_latency=warn, crit_latency=crit)
    api = _run(fake_matomo, checks=("api",), thresholds=limits).checks[0]
    assert api.status is expected, api
    if expected is not Status.OK:
        assert "slower than" in api.summary


def _facts(api: CheckResult) -> tuple[float | None, float | None]:
    """The api check's (reachable, token_accepted)."""
    return api.metrics["reachable"], api.metrics["token_accepted"]


def test_api_reports_reachable_and_token_accepted_when_matomo_answers(
    fake_matomo: FakeMatomo,
) -> None:
    assert _facts(_run(fake_matomo, checks=("api",)).checks[0]) == (1, 1)


def test_bad_token_is_critical_and_sent_once_per_run(fake_matomo: FakeMatomo) -> None:
    report = _run(fake_matomo, token=BAD_TOKEN)
    checks = _by_name(report)
    assert report.status is Status.CRITICAL
    assert checks["api"].status is Status.CRITICAL
    assert "Unable to authenticate" in checks["api"].summary
    for name in ("site", "replay-access", "tracking-failures"):
        assert checks[name].summary == "not checked: the api check failed"
    assert len(_token_requests(fake_matomo, BAD_TOKEN)) == 1
    # The tracker is still probed, without the rejected token.
    assert checks["tracking"].status is Status.OK
    assert "without the token" in checks["tracking"].summary


def test_rejected_token_is_not_sent_again_during_the_cool_down(fake_matomo: FakeMatomo) -> None:
    _run(fake_matomo, token=BAD_TOKEN)
    fake_matomo.state.requests.clear()
    report = _run(fake_matomo, token=BAD_TOKEN)
    api = _by_name(report)["api"]
    assert api.status is Status.CRITICAL
    assert api.summary.startswith("token rejected at ")
    assert "not sent again until" in api.summary
    assert api.hint and "new token" in api.hint
    # Matomo was not asked; the token is still known refused.
    assert _facts(api) == (None, 0)
    assert _token_requests(fake_matomo, BAD_TOKEN) == []
    assert not any(r.path.endswith("index.php") for r in fake_matomo.requests)


def test_a_changed_token_is_used_at_once_after_a_rejection(fake_matomo: FakeMatomo) -> None:
    _run(fake_matomo, token=BAD_TOKEN, checks=("api",))
    report = _run(fake_matomo, token=SUPERUSER_TOKEN, checks=("api",))
    assert report.status is Status.OK


def test_only_the_site_check_reports_the_auth_failure_itself(fake_matomo: FakeMatomo) -> None:
    site = _run(fake_matomo, token=BAD_TOKEN, checks=("site",)).checks[0]
    assert site.status is Status.CRITICAL
    assert site.summary.startswith("not checked: token rejected")


def test_lockout_is_critical_with_the_unblock_hint(fake_matomo: FakeMatomo) -> None:
    for _ in range(20):
        fake_matomo.state.record_failed_login("127.0.0.1")
    api = _run(fake_matomo, checks=("api",)).checks[0]
    assert api.status is Status.CRITICAL
    assert api.summary == "Matomo blocks this host after too many failed logins"
    assert api.hint and "login:unblock-blocked-ips" in api.hint
    assert _facts(api) == (1, 0)


def test_maintenance_is_critical(fake_matomo: FakeMatomo) -> None:
    fake_matomo.add_fault(Fault(endpoint="api", maintenance=True))
    api = _run(fake_matomo, checks=("api",)).checks[0]
    assert api.status is Status.CRITICAL
    assert "HTTP 503" in api.summary
    assert _facts(api) == (0, None)


@pytest.mark.parametrize(
    "fault",
    [
        Fault(endpoint="api", status=502, body=proxy_page(502)),
        Fault(endpoint="api", status=200, body=LOGIN_HTML),
    ],
    ids=["proxy-502", "login-page-200"],
)
def test_a_proxy_or_login_html_page_is_critical(fake_matomo: FakeMatomo, fault: Fault) -> None:
    fake_matomo.add_fault(fault)
    api = _run(fake_matomo, checks=("api",)).checks[0]
    assert api.status is Status.CRITICAL, api
    assert "<" not in api.summary
    assert _facts(api) == (0, None)


def test_unreachable_host_is_critical(fake_matomo: FakeMatomo) -> None:
    port = fake_matomo.port
    fake_matomo.stop()
    api = _run(fake_matomo, checks=("api",), url=f"http://127.0.0.1:{port}/").checks[0]
    assert api.status is Status.CRITICAL
    assert "Cannot connect" in api.summary


def test_tls_failure_is_critical(fake_matomo: FakeMatomo) -> None:
    # The fake speaks plain HTTP: an https:// handshake with it fails.
    url = f"https://127.0.0.1:{fake_matomo.port}/"
    api = _run(fake_matomo, checks=("api",), url=url).checks[0]
    assert api.status is Status.CRITICAL
    assert "TLS" in api.summary
    assert _facts(api) == (0, None)


def test_read_timeout_is_unknown_naming_the_method(fake_matomo: FakeMatomo) -> None:
    fake_matomo.add_fault(Fault(endpoint="api", hang=True))
    api = _run(fake_matomo, checks=("api",), timeout="0.3").checks[0]
    assert api.status is Status.UNKNOWN
    assert api.summary.startswith("timed out waiting for API.getMatomoVersion")
    assert _facts(api) == (0, None)


def test_overall_deadline_makes_hung_checks_unknown_naming_their_stage(
    fake_matomo: FakeMatomo,
) -> None:
    fake_matomo.add_fault(Fault(endpoint="api", hang=True))
    started = time.monotonic()
    report = _run(fake_matomo, max_time=0.5, checks=("api", "site", "queue"))
    assert time.monotonic() - started < 2.0
    checks = _by_name(report)
    assert checks["api"].summary == (
        "did not finish within 0.5 s (stage: waiting for Matomo's answer to API.getMatomoVersion)"
    )
    assert checks["site"].summary == (
        "did not finish within 0.5 s (stage: waiting for the shared API.getMatomoVersion call)"
    )
    # Matomo still had the version call when the time ran out: it did not answer in time.
    assert _facts(checks["api"]) == (0, None)
    assert checks["queue"].status is Status.OK
    assert report.status is Status.UNKNOWN


# --- site ----------------------------------------------------------------------------------------


def test_site_reports_its_timezone(fake_matomo: FakeMatomo) -> None:
    site = _run(fake_matomo, checks=("site",), site="2").checks[0]
    assert site.status is Status.OK
    assert site.summary == "site 2 'Example New York' visible (timezone America/New_York)"
    assert site.info["timezone"] == "America/New_York"


def test_unknown_site_is_critical(fake_matomo: FakeMatomo) -> None:
    site = _run(fake_matomo, checks=("site",), site="99").checks[0]
    assert site.status is Status.CRITICAL
    assert site.summary == "site 99 does not exist or the token cannot see it"


# --- replay-access -------------------------------------------------------------------------------


def test_replay_access_ok_with_admin_token(fake_matomo: FakeMatomo) -> None:
    check = _run(fake_matomo, ADMIN_TOKEN, checks=("replay-access",)).checks[0]
    assert check.status is Status.OK
    assert check.metrics == {"admin_access": 1}


def test_replay_access_ok_without_admin_when_no_hit_is_old(fake_matomo: FakeMatomo) -> None:
    _journal_with(_settings(fake_matomo), 3600).close()
    check = _run(fake_matomo, VIEW_TOKEN, checks=("replay-access",)).checks[0]
    assert check.status is Status.OK
    assert "lacks admin access on site 1, but no queued hit is near 24 h (oldest 1h)" in (
        check.summary
    )


def test_replay_access_warns_without_admin_when_hits_near_24_hours(
    fake_matomo: FakeMatomo,
) -> None:
    _journal_with(_settings(fake_matomo), 21 * 3600, 60).close()
    check = _run(fake_matomo, VIEW_TOKEN, checks=("replay-access",)).checks[0]
    assert check.status is Status.WARNING
    assert "oldest queued hit is 21h old: Matomo refuses it in 2h 59m (24 h)" in check.summary
    assert check.hint and "queue flush" in check.hint


# --- tracking ----------------------------------------------------------------------------------


def test_tracking_probe_stores_nothing_and_carries_no_rec(fake_matomo: FakeMatomo) -> None:
    check = _run(fake_matomo, checks=("tracking",)).checks[0]
    assert check.status is Status.OK, check
    assert fake_matomo.hits == []
    [probe] = [r for r in fake_matomo.requests if r.path.endswith("matomo.php")]
    assert b"rec=1" not in probe.body
    assert SUPERUSER_TOKEN not in probe.query


def test_tracking_that_processes_nothing_is_critical(fake_matomo: FakeMatomo) -> None:
    fake_matomo.add_fault(Fault(endpoint="tracking", maintenance=True))
    check = _run(fake_matomo, checks=("tracking",)).checks[0]
    assert check.status is Status.CRITICAL
    assert "processed 0 of 1 probe item" in check.summary


def test_tracking_database_down_is_critical(fake_matomo: FakeMatomo) -> None:
    fake_matomo.add_fault(Fault(endpoint="tracking", database_down=True))
    check = _run(fake_matomo, checks=("tracking",)).checks[0]
    assert check.status is Status.CRITICAL


# --- tracking-failures ---------------------------------------------------------------------------


def test_tracking_failures_warn_with_their_reasons(fake_matomo: FakeMatomo) -> None:
    fake_matomo.add_tracking_failure(1, 1)
    fake_matomo.add_tracking_failure(2, 2)
    check = _run(fake_matomo, checks=("tracking-failures",)).checks[0]
    assert check.status is Status.WARNING
    assert check.metrics == {"failures": 2}
    assert "site 1: The site does not exist." in check.summary
    assert "site 2: Request was not authenticated" in check.summary


def test_tracking_failures_unknown_without_admin_access(fake_matomo: FakeMatomo) -> None:
    check = _run(fake_matomo, VIEW_TOKEN, checks=("tracking-failures",)).checks[0]
    assert check.status is Status.UNKNOWN
    assert "lacks admin access" in check.summary
    assert fake_matomo.failed_logins == {}


# --- queue ---------------------------------------------------------------------------------------


def test_queue_without_journal_is_ok_and_creates_nothing(fake_matomo: FakeMatomo) -> None:
    check = _run(fake_matomo, checks=("queue",)).checks[0]
    assert check.status is Status.OK
    assert check.metrics["depth"] == 0
    assert not _settings(fake_matomo).journal_path.exists()


@pytest.mark.parametrize(
    ("ages", "limits", "expected", "phrase"),
    [
        ([60, 120], Thresholds(), Status.OK, "2 queued, oldest 2m, 0 dead, never flushed"),
        ([60, 120], Thresholds(warn_queue_depth=2), Status.WARNING, "queued hits 2 >= 2"),
        (
            [60, 120, 180],
            Thresholds(warn_queue_depth=2, crit_queue_depth=3),
            Status.CRITICAL,
            "queued hits 3 >= 3",
        ),
        ([2 * 3600], Thresholds(), Status.WARNING, "oldest queued hit age 2h >= 1h"),
        ([7 * 3600], Thresholds(), Status.CRITICAL, "oldest queued hit age 7h >= 6h"),
    ],
)
def test_queue_thresholds(
    fake_matomo: FakeMatomo,
    ages: list[float],
    limits: Thresholds,
    expected: Status,
    phrase: str,
) -> None:
    _journal_with(_settings(fake_matomo), *ages).close()
    check = _run(fake_matomo, checks=("queue",), thresholds=limits).checks[0]
    assert check.status is expected, check
    assert phrase in check.summary
    assert check.metrics["depth"] == len(ages)


def test_queue_dead_letters_and_unattributed_hits_warn(fake_matomo: FakeMatomo) -> None:
    journal = _journal_with(_settings(fake_matomo), 60, 60, 60)
    entries = journal.entries()
    journal.kill([(entries[0].id, "rejected by Matomo")])
    journal.mark_unattributed([entries[1].id], reason="batch partly refused")
    journal.close()
    check = _run(fake_matomo, checks=("queue",)).checks[0]
    assert check.status is Status.WARNING
    assert "1 dead letter(s) (rejected by Matomo)" in check.summary
    assert "1 hit(s) in batches Matomo partly refused" in check.summary
    assert check.metrics["dead_letters"] == 1
    assert check.metrics["unattributed"] == 1
    assert check.metrics["depth"] == 1


def test_queue_last_flush_stopped_by_authentication_is_critical(fake_matomo: FakeMatomo) -> None:
    journal = _journal_with(_settings(fake_matomo), 60)
    journal.record_flush(
        {
            "outcome": "stopped: Matomo rejected the token",
            "stopped_reason": "auth_failed",
            "auth_failed": True,
            "delivered": 0,
        }
    )
    journal.close()
    check = _run(fake_matomo, checks=("queue",)).checks[0]
    assert check.status is Status.CRITICAL
    assert "the last flush stopped: Matomo rejected the token" in check.summary
    assert check.metrics["last_flush_timestamp_seconds"] > 0


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"outcome": "3 delivered", "stopped_reason": "done", "auth_failed": False}, False),
        ({"stopped_reason": "rate_limited", "auth_failed": False}, False),
        ({"stopped_reason": "permission_denied", "auth_failed": False}, False),
        ({"stopped_reason": "auth_failed", "auth_failed": True}, True),
        ({"stopped_reason": "locked_out", "auth_failed": False}, True),
        ({"auth_failed": True}, True),
    ],
)
def test_flush_record_auth_detection(record: dict[str, object], expected: bool) -> None:
    assert flush_stopped_on_auth(record) is expected


# --- cache ---------------------------------------------------------------------------------------


def test_cache_missing_is_ok(fake_matomo: FakeMatomo) -> None:
    check = _run(fake_matomo, checks=("cache",)).checks[0]
    assert check.status is Status.OK
    assert check.metrics == {"size_bytes": 0}


def test_cache_database_reports_its_size(fake_matomo: FakeMatomo) -> None:
    path = _settings(fake_matomo).cache_path
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, value BLOB)")
    conn.close()
    check = _run(fake_matomo, checks=("cache",)).checks[0]
    assert check.status is Status.OK
    assert check.metrics["size_bytes"] == path.stat().st_size > 0


def test_damaged_cache_warns(fake_matomo: FakeMatomo) -> None:
    path = _settings(fake_matomo).cache_path
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database" * 100)
    check = _run(fake_matomo, checks=("cache",)).checks[0]
    assert check.status is Status.WARNING
    assert "cannot be read" in check.summary
    assert check.hint and "cache clear" in check.hint


# --- the exporter's cache -------------------------------------------------------------------------


def _report(status: Status = Status.OK) -> HealthReport:
    return HealthReport(status, (), time.time(), 0.0, Thresholds())


def test_cached_health_shares_one_run_between_concurrent_callers() -> None:
    gate = threading.Event()
    calls: list[int] = []

    def produce() -> HealthReport:
        calls.append(1)
        gate.wait(5)
        return _report()

    cache = CachedHealth(produce, interval=30)
    results: list[HealthReport] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    gate.set()
    for thread in threads:
        thread.join(5)
    assert len(results) == 8
    assert len({id(r) for r in results}) == 1
    assert calls == [1]


def test_cached_health_runs_again_after_the_interval() -> None:
    now = [0.0]
    produced: list[HealthReport] = []

    def produce() -> HealthReport:
        produced.append(_report())
        return produced[-1]

    cache = CachedHealth(produce, interval=30, monotonic=lambda: now[0])
    first = cache.get()
    now[0] = 29.0
    assert cache.get() is first
    now[0] = 30.5
    assert cache.get() is not first
    assert len(produced) == 2


def test_a_journal_that_is_not_a_journal_is_critical_and_left_alone(
    fake_matomo: FakeMatomo,
) -> None:
    path = _settings(fake_matomo).journal_path
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage, not SQLite" * 50)
    check = _run(fake_matomo, checks=("queue",)).checks[0]
    assert check.status is Status.CRITICAL
    assert str(path) in check.summary
    assert path.read_bytes() == b"garbage, not SQLite" * 50


# --- one metric schema per check -------------------------------------------------------------


def _series(report: HealthReport) -> set[str]:
    """The Prometheus sample names of a report (Matomo's version info included: its label is
    "unknown" when Matomo did not answer)."""
    from prometheus_client.parser import text_string_to_metric_families

    from matokit.cli.health_render import render_prometheus

    families = text_string_to_metric_families(render_prometheus(report))
    return {s.name for f in families for s in f.samples}


def test_every_check_reports_the_same_metric_keys_in_every_outcome(
    fake_matomo: FakeMatomo,
) -> None:
    settings = _settings(fake_matomo)
    fast = Thresholds(warn_latency=0.0, crit_latency=10.0, warn_queue_depth=1)
    reports = {"ok, no journal": _run(fake_matomo)}
    journal = _journal_with(settings, 60)
    journal.record_flush({"outcome": "done", "delivered": 3})
    journal.close()
    reports["warning, journal flushed"] = _run(fake_matomo, thresholds=fast)
    reports["critical"] = _run(fake_matomo, thresholds=Thresholds(warn_latency=0, crit_latency=0))
    reports["token rejected"] = _run(fake_matomo, BAD_TOKEN)
    settings.journal_path.unlink()
    port = fake_matomo.port
    fake_matomo.stop()
    reports["unreachable"] = _run(fake_matomo, url=f"http://127.0.0.1:{port}/")

    statuses = {(label, c.name): c.status for label, r in reports.items() for c in r.checks}
    assert statuses[("warning, journal flushed", "queue")] is Status.WARNING
    assert statuses[("critical", "api")] is Status.CRITICAL
    assert statuses[("unreachable", "tracking")] is Status.CRITICAL
    for label, report in reports.items():
        for check in report.checks:
            assert tuple(check.metrics) == STANDARD_CHECKS[check.name].metrics, (label, check)
    api = reports["unreachable"].check("api")
    assert api is not None
    assert api.metrics == {"latency_seconds": None, "reachable": 0, "token_accepted": None}
    flushed = reports["warning, journal flushed"].check("queue")
    assert flushed is not None and flushed.metrics["last_flush_delivered"] == 3
    never = reports["ok, no journal"].check("queue")
    assert never is not None and never.metrics["last_flush_delivered"] is None
    refused = reports["token rejected"].check("api")
    assert refused is not None
    assert refused.metrics == {"latency_seconds": None, "reachable": 1, "token_accepted": 0}
    series = {label: _series(report) for label, report in reports.items()}
    assert all(names == series["ok, no journal"] for names in series.values()), series


def test_a_check_reporting_an_undeclared_metric_is_an_internal_error(
    fake_matomo: FakeMatomo,
) -> None:
    def sloppy(run: object, name: str) -> CheckResult:
        return CheckResult(name, Status.OK, "fine", metrics={"surprise": 1})

    report = run_checks({"sloppy": Check(sloppy, ("expected",))}, _loader(fake_matomo))
    check = report.checks[0]
    assert check.status is Status.UNKNOWN
    assert "undeclared metrics: ['surprise']" in check.summary
    assert check.metrics == {"expected": None}
