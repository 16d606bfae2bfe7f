"""`matokit health serve` scraped while Matomo goes down and comes back: every scrape passes
`promtool check metrics` and carries the same set of series, in the Prometheus text format and
in OpenMetrics alike, so an alert or graph never loses its series during the outage."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import SpawnMatokit
from tests.fakematomo import SUPERUSER_TOKEN, FakeMatomo
from tests.promtool import check_metrics, require_promtool
from tests.series import OPENMETRICS, expected_series, series_of

TEXT = "text/plain; version=0.0.4"
PHASE_TIMEOUT = 20.0


class Scraper:
    """Scrapes /metrics, asking for OpenMetrics and the text format in turn; keeps each."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.scrapes: list[tuple[str, str]] = []  # (content type, body)

    def scrape(self) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        accept = OPENMETRICS if len(self.scrapes) % 2 == 0 else TEXT
        request = urllib.request.Request(self.base + "/metrics", headers={"Accept": accept})
        with urllib.request.urlopen(request, timeout=10) as response:
            content_type = response.headers["Content-Type"]
            body = response.read().decode("utf-8")
        assert content_type.startswith(accept), (accept, content_type)
        self.scrapes.append((content_type, body))
        samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        for family in text_string_to_metric_families(body.removesuffix("# EOF\n")):
            for s in family.samples:
                samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
        return samples

    def until(self, what: str, done: Callable[[dict], bool]) -> dict:
        """Scrape until `done(samples)`; bounded by PHASE_TIMEOUT."""
        deadline = time.monotonic() + PHASE_TIMEOUT
        while True:
            samples = self.scrape()
            if done(samples):
                return samples
            assert time.monotonic() < deadline, f"no scrape showed {what} in {PHASE_TIMEOUT} s"
            time.sleep(0.2)


def _api_status(samples: dict) -> float:
    return next(
        v for labels, v in samples["matokit_check_status"].items() if ("check", "api") in labels
    )


def _only(samples: dict, name: str) -> tuple[dict[str, str], float]:
    ((labels, value),) = samples[name].items()
    return dict(labels), value


def test_scrapes_keep_every_series_while_matomo_goes_down_and_comes_back(
    spawn_matokit: SpawnMatokit, fake_matomo: FakeMatomo
) -> None:
    require_promtool()
    env = {"MATOMO_URL": fake_matomo.url, "MATOMO_SITE_ID": "1", "MATOMO_TOKEN": SUPERUSER_TOKEN}
    proc = spawn_matokit(
        "health",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--interval",
        "1s",
        "--max-time",
        "5s",
        env=env,
    )
    assert proc.stderr is not None
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)/metrics", proc.stderr.readline())
    assert match
    scraper = Scraper(match.group(1))
    port = fake_matomo.port
    back: FakeMatomo | None = None
    try:
        up = scraper.until("Matomo up", lambda s: _api_status(s) == 0)
        assert _only(up, "matokit_api_reachable")[1] == 1
        version = _only(up, "matokit_matomo_info")[0]["version"]
        assert version not in ("", "unknown")
        seen_up = len(scraper.scrapes)

        fake_matomo.stop()
        down = scraper.until("Matomo down", lambda s: _api_status(s) == 2)
        assert _only(down, "matokit_api_reachable")[1] == 0
        assert _only(down, "matokit_matomo_info")[0]["version"] == "unknown"
        seen_down = len(scraper.scrapes)

        back = FakeMatomo(port=port).start()  # Matomo restarts on the same address
        again = scraper.until("Matomo back", lambda s: _api_status(s) == 0)
        assert _only(again, "matokit_api_reachable")[1] == 1
        assert _only(again, "matokit_matomo_info")[0]["version"] == version
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if back is not None:
            back.stop()
    assert 0 < seen_up < seen_down < len(scraper.scrapes)
    expected = expected_series()
    for n, (content_type, body) in enumerate(scraper.scrapes):
        openmetrics = content_type.startswith("application/openmetrics-text")
        assert body.endswith("\n# EOF\n") == openmetrics
        check_metrics(body, f"scrape {n} ({content_type})")
        assert series_of(body, openmetrics=openmetrics) == expected, f"scrape {n}"
    assert proc.returncode == 0  # SIGTERM stops the exporter cleanly
