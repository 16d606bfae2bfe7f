"""`matokit track` as an installed executable: delivery, queueing, lean startup, imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import RunMatokit
from tests.fakematomo import SUPERUSER_TOKEN, FakeMatomo, Fault

EVENT = ("track", "event", "--category", "shop", "--action", "buy")


def test_event_is_delivered_and_the_token_travels_only_in_the_body(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, env: dict[str, str]
) -> None:
    result = run_matokit(*EVENT, "--format", "json", env=env)
    assert result.code == 0, result
    assert json.loads(result.stdout)["state"] == "delivered"
    assert len(fake_matomo.hits) == 1
    # The tracking request, and the day's look at the site's key dimension (exactly-once).
    assert [r.path.rsplit("/", 1)[-1] for r in fake_matomo.requests] == ["index.php", "matomo.php"]
    for request in fake_matomo.requests:
        assert SUPERUSER_TOKEN not in request.query
    assert SUPERUSER_TOKEN not in result.output


def test_queue_mode_never_imports_requests(
    matokit_env: dict[str, str], env: dict[str, str], tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "matokit", *EVENT, "--queue"],
        env={**matokit_env, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert not imported & {"requests", "urllib3", "rich", "requests_cache"}


def test_unavailable_matomo_queues_and_a_flush_delivers_later(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, env: dict[str, str]
) -> None:
    fake_matomo.add_fault(Fault(endpoint="tracking", status=502, times=1))
    result = run_matokit(*EVENT, "--format", "json", env=env)
    assert result.code == 75, result
    assert json.loads(result.stdout)["state"] == "queued"
    assert "queue flush" in result.stderr
    flushed = run_matokit("queue", "flush", "--all", env=env)
    assert flushed.code == 0, flushed
    # A 502 may come from a proxy after Matomo processed the hit: re-sent, and counted.
    assert 1 <= len(fake_matomo.hits) <= 2


def test_large_import_from_a_pipe_is_delivered_without_a_progress_bar(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, env: dict[str, str]
) -> None:
    lines = "".join(
        json.dumps({"type": "pageview", "url": f"https://example.org/{i}", "id": str(i)}) + "\n"
        for i in range(5000)
    )
    result = run_matokit("track", "import", "-", "--batch-size", "250", input=lines, env=env)
    assert result.code == 0, result
    assert len(fake_matomo.hits) == 5000
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    assert "5000 read, 5000 sent, 0 queued" in result.stderr


def test_import_without_url_exits_78_before_reading(
    run_matokit: RunMatokit, matokit_env: dict[str, str]
) -> None:
    result = run_matokit("track", "import", "-", input="{}\n", env={"MATOMO_SITE_ID": "1"})
    assert result.code == 78, result
    data = Path(matokit_env["MATOKIT_DATA_DIR"])
    assert not (data / "default" / "journal.sqlite").exists()
