"""Every health output a scraper reads passes `promtool check metrics`, and carries the same
series whichever check fails: each check failing in turn, Matomo down, the run's deadline.

In-process (the standard checks against the fake Matomo, then the renderers); the CLI's
stdout and `--output` file in-process too. `health serve` is scraped end to end in
tests/e2e/test_health_scrape.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from matokit.cli.health_render import prometheus_exposition, render_prometheus
from matokit.config import Settings, resolve
from matokit.health import CHECKS, HealthReport, Status, Thresholds, run_health
from matokit.health.series import UNKNOWN_LABEL
from matokit.journal import Journal, NewHit
from tests.clirunner import invoke
from tests.fakematomo import SUPERUSER_TOKEN, FakeMatomo, Fault
from tests.promtool import check_metrics
from tests.series import OPENMETRICS, expected_series, series_of


def _loader(fake: FakeMatomo, *, token: str | None = SUPERUSER_TOKEN, **flags: str) -> Callable:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MATOMO_", "MATOKIT_"))}
    if token is not None:
        env["MATOMO_TOKEN"] = token
    given = {f"--{k}": v for k, v in flags.items()}
    merged = {"--url": given.get("--url") or fake.url, "--site": "1"} | given
    return lambda: resolve(merged, env=env)


def _settings(fake: FakeMatomo) -> Settings:
    return _loader(fake)()


def _queue_hits(fake: FakeMatomo, count: int) -> None:
    journal = Journal(_settings(fake).journal_path)
    now = time.time()
    journal.enqueue(
        NewHit(key=f"k{i}", params={"idsite": "1", "url": "https://e.org/"}, created_at=now - 60)
        for i in range(count)
    )
    journal.close()


def _garbage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a database, " * 100)


@dataclass
class Setup:
    """How a scenario runs health: the token, global flags, thresholds, time limit."""

    token: str | None = SUPERUSER_TOKEN
    flags: dict[str, str] = field(default_factory=dict)
    thresholds: Thresholds | None = None
    max_time: float = 10.0


def _no_token(fake: FakeMatomo) -> Setup:
    return Setup(token=None)


def _maintenance(fake: FakeMatomo) -> Setup:
    fake.add_fault(Fault(endpoint="api", maintenance=True))
    return Setup()


def _unknown_site(fake: FakeMatomo) -> Setup:
    return Setup(flags={"site": "99"})


def _admin_access_fails(fake: FakeMatomo) -> Setup:
    method = "SitesManager.getSitesIdWithAdminAccess"
    fake.add_fault(Fault(endpoint="api", method=method, status=500))
    return Setup()


def _tracker_fails(fake: FakeMatomo) -> Setup:
    fake.add_fault(Fault(endpoint="tracking", status=500))
    return Setup()


def _tracking_failure(fake: FakeMatomo) -> Setup:
    fake.add_tracking_failure(1, 1)
    return Setup()


def _damaged_journal(fake: FakeMatomo) -> Setup:
    _garbage(_settings(fake).journal_path)
    return Setup()


def _queue_above_threshold(fake: FakeMatomo) -> Setup:
    _queue_hits(fake, 2)
    return Setup(thresholds=Thresholds(warn_queue_depth=1))


def _damaged_cache(fake: FakeMatomo) -> Setup:
    _garbage(_settings(fake).cache_path)
    return Setup()


def _matomo_down(fake: FakeMatomo) -> Setup:
    url = fake.url
    fake.stop()
    return Setup(flags={"url": url})


def _matomo_hangs(fake: FakeMatomo) -> Setup:
    fake.add_fault(Fault(endpoint="api", hang=True))
    return Setup(max_time=0.5)


# name -> (what breaks, the check that is then not OK)
SCENARIOS: dict[str, tuple[Callable[[FakeMatomo], Setup], str]] = {
    "config: no token": (_no_token, "config"),
    "api: maintenance": (_maintenance, "api"),
    "site: unknown": (_unknown_site, "site"),
    "replay-access: HTTP 500": (_admin_access_fails, "replay-access"),
    "tracking: HTTP 500": (_tracker_fails, "tracking"),
    "tracking-failures: one": (_tracking_failure, "tracking-failures"),
    "journal: damaged": (_damaged_journal, "journal"),
    "queue: above threshold": (_queue_above_threshold, "queue"),
    "cache: damaged": (_damaged_cache, "cache"),
    "Matomo down": (_matomo_down, "tracking"),
    "Matomo hangs past --max-time": (_matomo_hangs, "api"),
}


def _run(fake: FakeMatomo, scenario: str) -> HealthReport:
    breaks, _ = SCENARIOS[scenario]
    setup = breaks(fake)
    load = _loader(fake, token=setup.token, **setup.flags)
    return run_health(load, thresholds=setup.thresholds, max_time=setup.max_time)


def test_the_scenarios_break_every_check_in_turn() -> None:
    assert {check for _, check in SCENARIOS.values()} == set(CHECKS)


@pytest.mark.parametrize("scenario", ["all OK", *SCENARIOS])
def test_every_exposition_passes_promtool_with_the_same_series(
    fake_matomo: FakeMatomo, scenario: str
) -> None:
    if scenario == "all OK":
        report = run_health(_loader(fake_matomo))
        assert report.status is Status.OK, report
    else:
        report = _run(fake_matomo, scenario)
        failing = report.check(SCENARIOS[scenario][1])
        assert failing is not None and failing.status is not Status.OK, report
    text = render_prometheus(report)
    check_metrics(text, f"--format prometheus ({scenario})")
    body, content_type = prometheus_exposition(report, OPENMETRICS)
    assert content_type.startswith(OPENMETRICS)
    openmetrics = body.decode("utf-8")
    assert openmetrics.endswith("\n# EOF\n")
    check_metrics(openmetrics, f"OpenMetrics ({scenario})")
    assert series_of(text) == expected_series()
    assert series_of(openmetrics, openmetrics=True) == expected_series()


def test_matomo_info_says_unknown_while_matomo_is_down(fake_matomo: FakeMatomo) -> None:
    report = _run(fake_matomo, "Matomo down")
    families = {f.name: f for f in text_string_to_metric_families(render_prometheus(report))}
    (sample,) = families["matokit_matomo_info"].samples
    assert sample.labels["version"] == UNKNOWN_LABEL and sample.value == 1
    (reachable,) = families["matokit_api_reachable"].samples
    assert reachable.value == 0


def test_a_selection_of_checks_exposes_exactly_their_series(fake_matomo: FakeMatomo) -> None:
    report = run_health(_loader(fake_matomo), checks=("api", "queue"))
    text = render_prometheus(report)
    check_metrics(text)
    assert series_of(text) == expected_series(("api", "queue"))


def test_cli_stdout_and_output_file_pass_promtool(
    fake_matomo: FakeMatomo,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("MATOMO_URL", fake_matomo.url)
    monkeypatch.setenv("MATOMO_SITE_ID", "1")
    monkeypatch.setenv("MATOMO_TOKEN", SUPERUSER_TOKEN)
    shown = invoke(capsys, "health", "--format", "prometheus")
    assert shown.code == 0, shown
    check_metrics(shown.stdout, "health --format prometheus")
    target = tmp_path / "textfile" / "matokit.prom"
    target.parent.mkdir()
    written = invoke(capsys, "health", "--format", "prometheus", "--output", str(target))
    assert written.code == 0 and written.stdout == "", written
    check_metrics(target.read_text(), "health --output FILE")
    assert series_of(target.read_text()) == series_of(shown.stdout) == expected_series()
