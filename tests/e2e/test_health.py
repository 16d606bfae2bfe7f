"""`matokit health` and `matokit health serve` as operators run them: exit codes, formats,
lockout safety across processes, and an exporter that asks Matomo once per interval."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import RunMatokit, SpawnMatokit
from tests.fakematomo import SUPERUSER_TOKEN, VIEW_TOKEN, FakeMatomo, Fault
from tests.promtool import check_metrics

BAD_TOKEN = "0badc0de" * 4


def _env(fake: FakeMatomo, token: str = SUPERUSER_TOKEN) -> dict[str, str]:
    return {"MATOMO_URL": fake.url, "MATOMO_SITE_ID": "1", "MATOMO_TOKEN": token}


def _with_token(fake: FakeMatomo, token: str) -> list[str]:
    return [r.path + "?" + r.query for r in fake.requests if token.encode() in r.body]


def _json(result_stdout: str) -> dict:
    data = json.loads(result_stdout)
    assert data["schema"] == "matokit.health/1"
    return data


# --- every exit code ------------------------------------------------------------------------


def test_exit_0_ok_with_a_superuser_token(run_matokit: RunMatokit, fake_matomo: FakeMatomo) -> None:
    result = run_matokit("health", env=_env(fake_matomo))
    assert result.code == 0, result
    assert "overall: OK" in result.stdout
    assert SUPERUSER_TOKEN not in result.output
    assert fake_matomo.hits == []  # the tracking probe stores nothing


def test_exit_1_warning_for_tracking_failures(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo
) -> None:
    fake_matomo.add_tracking_failure(1, 1)
    result = run_matokit("health", "--format", "json", env=_env(fake_matomo))
    assert result.code == 1, result
    data = _json(result.stdout)
    assert data["status"] == "WARNING"
    failures = next(c for c in data["checks"] if c["name"] == "tracking-failures")
    assert "The site does not exist." in failures["summary"]


def test_exit_1_warning_for_queue_depth(run_matokit: RunMatokit, fake_matomo: FakeMatomo) -> None:
    env = _env(fake_matomo)
    for n in range(2):
        queued = run_matokit("track", "pageview", "--url", f"https://e.org/{n}", "--queue", env=env)
        assert queued.code == 0, queued
    result = run_matokit(
        "health", "--check", "queue", "--warn-queue-depth", "2", "--format", "nagios", env=env
    )
    assert result.code == 1, result
    assert result.stdout.startswith("MATOKIT WARNING - queue WARNING: queued hits 2 >= 2")
    assert "'queue_depth'=2;2;10000;0" in result.stdout


@pytest.mark.parametrize(
    ("token", "fault", "phrase"),
    [
        (BAD_TOKEN, None, "Unable to authenticate"),
        (SUPERUSER_TOKEN, Fault(endpoint="api", maintenance=True), "HTTP 503"),
        (SUPERUSER_TOKEN, "lockout", "too many failed logins"),
    ],
    ids=["bad-token", "maintenance-503", "lockout"],
)
def test_exit_2_critical(
    run_matokit: RunMatokit,
    fake_matomo: FakeMatomo,
    token: str,
    fault: Fault | str | None,
    phrase: str,
) -> None:
    if fault == "lockout":
        for _ in range(20):
            fake_matomo.state.record_failed_login("127.0.0.1")
    elif isinstance(fault, Fault):
        fake_matomo.add_fault(fault)
    result = run_matokit("health", "--format", "nagios", env=_env(fake_matomo, token))
    assert result.code == 2, result
    assert result.stdout.startswith("MATOKIT CRITICAL - api CRITICAL: "), result
    assert phrase in result.stdout
    if fault == "lockout":
        assert (
            "login:unblock-blocked-ips"
            in run_matokit("health", "--check", "api", env=_env(fake_matomo, token)).stdout
        )


def test_exit_3_unknown_when_matomo_hangs_names_the_stage(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo
) -> None:
    fake_matomo.add_fault(Fault(endpoint="api", hang=True))
    started = time.monotonic()
    result = run_matokit(
        "health",
        "--check",
        "api,site",
        "--max-time",
        "1s",
        "--format",
        "json",
        env=_env(fake_matomo),
    )
    assert time.monotonic() - started < 5
    assert result.code == 3, result
    checks = {c["name"]: c for c in _json(result.stdout)["checks"]}
    assert checks["api"]["status"] == "UNKNOWN"
    assert checks["api"]["summary"] == (
        "did not finish within 1 s (stage: waiting for Matomo's answer to API.getMatomoVersion)"
    )


def test_exit_3_unknown_on_an_http_read_timeout(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo
) -> None:
    fake_matomo.add_fault(Fault(endpoint="any", hang=True))
    result = run_matokit(
        "--timeout", "0.5", "health", "--check", "api,tracking", env=_env(fake_matomo)
    )
    assert result.code == 3, result
    assert "timed out waiting for" in result.stdout


# --- lockout safety across processes ----------------------------------------------------------


def test_bad_token_reaches_matomo_once_per_cool_down_across_processes(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo
) -> None:
    env = _env(fake_matomo, BAD_TOKEN)
    results = [run_matokit("health", "--format", "json", env=env) for _ in range(4)]
    assert [r.code for r in results] == [2, 2, 2, 2], results
    assert len(_with_token(fake_matomo, BAD_TOKEN)) == 1
    assert fake_matomo.failed_logins == {"127.0.0.1": 1}
    for result in results[1:]:
        api = next(c for c in _json(result.stdout)["checks"] if c["name"] == "api")
        assert api["status"] == "CRITICAL"
        assert re.match(
            r"token rejected at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC; not sent again until ",
            api["summary"],
        ), api
    assert BAD_TOKEN not in "".join(r.output for r in results)


def test_flush_stopped_by_a_rejected_token_makes_the_queue_critical(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo
) -> None:
    env = _env(fake_matomo, BAD_TOKEN)
    # A hit older than 24 h makes the flush check the token first (Matomo needs admin access).
    old = str(int(time.time() - 25 * 3600))
    queued = run_matokit(
        "track", "pageview", "--url", "https://e.org/", "--at", old, "--queue", env=env
    )
    assert queued.code == 0, queued
    flush = run_matokit("queue", "flush", env=env)
    assert flush.code != 0, flush
    result = run_matokit("health", "--check", "queue", "--format", "json", env=env)
    assert result.code == 2, result
    queue = _json(result.stdout)["checks"][0]
    assert queue["summary"].startswith("the last flush stopped: Matomo rejected the token")
    assert len(_with_token(fake_matomo, BAD_TOKEN)) <= 1


# --- formats and --output ---------------------------------------------------------------------


def test_prometheus_output_file_for_the_textfile_collector(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, tmp_path: Path
) -> None:
    target = tmp_path / "textfile" / "matokit.prom"
    target.parent.mkdir()
    target.write_text("old\n")
    result = run_matokit(
        "health", "--format", "prometheus", "--output", target, env=_env(fake_matomo)
    )
    assert result.code == 0, result
    assert result.stdout == ""
    check_metrics(target.read_text(), "the textfile")
    families = {f.name: f for f in text_string_to_metric_families(target.read_text())}
    assert families["matokit_up"].samples[0].value == 1
    assert {s.labels["check"] for s in families["matokit_check_status"].samples} == {
        "config",
        "api",
        "site",
        "replay-access",
        "tracking",
        "tracking-failures",
        "journal",
        "queue",
        "cache",
    }
    assert target.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["matokit.prom"]


def test_unwritable_output_exits_3_with_a_message(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, tmp_path: Path
) -> None:
    target = tmp_path / "missing-dir" / "matokit.prom"
    result = run_matokit(
        "health", "--format", "prometheus", "--output", target, env=_env(fake_matomo)
    )
    assert result.code == 3, result
    assert f"cannot write {target}" in result.stderr
    assert "the old file is unchanged" in result.stderr
    assert not target.exists()


def test_view_token_tracking_failures_is_unknown_not_critical(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo
) -> None:
    result = run_matokit("health", "--format", "nagios", env=_env(fake_matomo, VIEW_TOKEN))
    assert result.code == 3, result
    assert result.stdout.startswith("MATOKIT UNKNOWN - tracking-failures UNKNOWN: not checked")
    chosen = "config,api,site,replay-access,tracking,queue,cache"
    result = run_matokit("health", "--check", chosen, env=_env(fake_matomo, VIEW_TOKEN))
    assert result.code == 0, result
    assert fake_matomo.failed_logins == {}


def test_thresholds_take_durations_and_refuse_garbage(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo
) -> None:
    ok = run_matokit(
        "health",
        "--check",
        "queue",
        "--warn-queue-age",
        "90s",
        "--crit-queue-age",
        "6h",
        env=_env(fake_matomo),
    )
    assert ok.code == 0, ok
    assert "note:" not in ok.stderr


# Bad arguments to a check are UNKNOWN (3), never CRITICAL: monitoring-plugins guidelines.
USAGE_ERRORS = [
    (("health", "--warn-queue-age", "soon"), "is not a duration"),
    (("health", "--check", "api,nope"), "Unknown check 'nope'"),
    (("health", "--check", ","), "names no check"),
    (("health", "--format", "yaml"), "'yaml' is not one of 'text', 'json', 'prometheus'"),
    (("health", "--format", "JSON"), "'JSON' is not one of"),
    (("health", "--format", "yaml", "serve"), "'yaml' is not one of"),
    (("health", "--no-such-flag"), "No such option"),
    (("health", "--max-time", "999999d"), "longer than the maximum duration, 3650d"),
    (("health", "--warn-queue-age", "2h", "--crit-queue-age", "1h"), "is above"),
    (("--site", "abc", "health"), "site_id 'abc' from option --site"),
    (("--bogus", "health"), "No such option"),
    (("health", "serve", "--listen", "0.0.0.0:9464"), "refusing a non-loopback address"),
]


@pytest.mark.parametrize(
    ("args", "message"), USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS]
)
def test_bad_arguments_exit_3_unknown_with_the_message(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, args: tuple[str, ...], message: str
) -> None:
    result = run_matokit(*args, env=_env(fake_matomo))
    assert result.code == 3, result
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # no verdict: nothing a monitor could read as OK
    assert fake_matomo.requests == []


def test_a_critical_threshold_alone_moves_the_default_warning_and_says_so(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo
) -> None:
    result = run_matokit(
        "health",
        "--check",
        "queue",
        "--crit-queue-age",
        "1s",
        "--format",
        "json",
        env=_env(fake_matomo),
    )
    assert result.code == 0, result
    assert (
        "matokit: note: --crit-queue-age 1s is below the default --warn-queue-age (1h): "
        "--warn-queue-age is 1s too." in result.stderr
    )
    limits = _json(result.stdout)["thresholds"]
    assert (limits["warn_queue_age_s"], limits["crit_queue_age_s"]) == (1, 1)


def test_max_time_bounds_the_process_when_matomo_hangs(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo
) -> None:
    # Matomo never answers (until the test ends) and the HTTP timeout is long: only
    # --max-time can end the run. Hung checks are abandoned, not waited for.
    fake_matomo.add_fault(Fault(endpoint="any", hang=True))
    result = run_matokit(
        "--timeout",
        "30",
        "health",
        "--max-time",
        "2",
        "--format",
        "json",
        env=_env(fake_matomo),
        timeout=6,  # 3x --max-time: subprocess.TimeoutExpired fails it
    )
    assert result.code == 3, result
    checks = {c["name"]: c for c in _json(result.stdout)["checks"]}
    hung = [name for name, c in checks.items() if c["summary"].startswith("did not finish")]
    assert {"api", "tracking"} <= set(hung), checks
    assert all(checks[name]["status"] == "UNKNOWN" for name in hung)
    assert checks["queue"]["status"] == "OK"  # local checks still report


# --- the exporter -----------------------------------------------------------------------------


def _start_exporter(spawn: SpawnMatokit, env: dict[str, str], *args: str) -> tuple[object, str]:
    proc = spawn("health", "serve", "--listen", "127.0.0.1:0", *args, env=env)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)/metrics", line)
    assert match, line
    return proc, match.group(1)


def _get(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str, str]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read().decode()
            return response.status, response.headers["Content-Type"], body
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def test_exporter_asks_matomo_once_per_interval_however_often_scraped(
    spawn_matokit: SpawnMatokit, fake_matomo: FakeMatomo
) -> None:
    proc, base = _start_exporter(spawn_matokit, _env(fake_matomo), "--interval", "1s")
    statuses: list[int] = []

    def scrape() -> None:
        statuses.append(_get(base + "/metrics")[0])

    started = time.monotonic()
    threads = [threading.Thread(target=scrape) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    while time.monotonic() - started < 2.5:
        scrape()
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    version_calls = sum("getMatomoVersion" in r.query for r in fake_matomo.requests)
    assert statuses and set(statuses) == {200}
    assert len(statuses) > 30
    assert 1 <= version_calls <= int(elapsed / 1.0) + 1, version_calls

    _, content_type, body = _get(base + "/metrics")
    assert content_type.startswith("text/plain; version=0.0.4")
    names = {f.name for f in text_string_to_metric_families(body)}
    assert {"matokit_up", "matokit_api_latency_seconds", "matokit_queue_depth"} <= names

    proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    assert proc.wait(timeout=10) == 0  # type: ignore[attr-defined]


def test_exporter_serves_openmetrics_to_a_scraper_that_asks_for_it(
    spawn_matokit: SpawnMatokit, fake_matomo: FakeMatomo
) -> None:
    proc, base = _start_exporter(spawn_matokit, _env(fake_matomo), "--interval", "30s")
    # What Prometheus 2.x sends by default.
    accept = (
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
        "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )
    status, content_type, body = _get(base + "/metrics", headers={"Accept": accept})
    assert status == 200
    assert content_type.startswith("application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert body.endswith("\n# EOF\n")
    families = {f.name: f for f in openmetrics_families(body)}
    assert families["matokit_up"].samples[0].value == 1
    assert families["matokit_up"].samples[0].labels == {"profile": "default"}

    status, content_type, text = _get(base + "/metrics", headers={"Accept": "*/*"})
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    assert "# EOF" not in text
    assert {f.name for f in text_string_to_metric_families(text)} == set(families)
    proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    assert proc.wait(timeout=10) == 0  # type: ignore[attr-defined]


def test_exporter_healthz_and_legacy_path_answer_503_when_critical(
    spawn_matokit: SpawnMatokit, fake_matomo: FakeMatomo
) -> None:
    proc, base = _start_exporter(spawn_matokit, _env(fake_matomo), "--interval", "30s")
    status, content_type, body = _get(base + "/healthz")
    assert status == 200 and content_type.startswith("application/json")
    assert json.loads(body)["status"] == "OK"
    post = _get(base + "/tools/get-health-status", data=b"{}")
    assert post[0] == 200 and json.loads(post[2]) == json.loads(body)
    assert _get(base + "/nope")[0] == 404
    proc.send_signal(signal.SIGINT)  # type: ignore[attr-defined]
    assert proc.wait(timeout=10) == 0  # type: ignore[attr-defined]

    fake_matomo.add_fault(Fault(endpoint="api", maintenance=True))
    proc, base = _start_exporter(spawn_matokit, _env(fake_matomo))
    for path in ("/healthz", "/tools/get-health-status"):
        status, _, body = _get(base + path)
        assert status == 503
        assert json.loads(body)["status"] == "CRITICAL"
    proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    assert proc.wait(timeout=10) == 0  # type: ignore[attr-defined]


def test_exporter_logs_in_the_format_and_level_of_its_profile(
    spawn_matokit: SpawnMatokit, fake_matomo: FakeMatomo, matokit_env: dict[str, str]
) -> None:
    config = Path(matokit_env["MATOKIT_CONFIG"])
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('[profiles.default]\nlog_format = "json"\nlog_level = "info"\n')
    proc, base = _start_exporter(spawn_matokit, _env(fake_matomo), "--interval", "30s")
    assert _get(base + "/healthz")[0] == 200
    proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    _, stderr = proc.communicate(timeout=10)  # type: ignore[attr-defined]
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    served = [r for r in records if "GET /healthz" in r["message"]]
    assert served and served[0]["level"] == "info", stderr
    assert "GET /healthz" not in "".join(
        line for line in stderr.splitlines() if not line.startswith("{")
    )


def test_exporter_refuses_a_non_loopback_address_without_allow_remote(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo
) -> None:
    result = run_matokit("health", "serve", "--listen", "0.0.0.0:9464", env=_env(fake_matomo))
    assert result.code == 3, result  # a bad argument of health is UNKNOWN
    assert "refusing a non-loopback address" in result.stderr
    assert "--allow-remote" in result.stderr
