"""Smoke tests of the installed executable: it starts, and it reads its configuration."""

from __future__ import annotations

import subprocess
import sys

from tests.e2e.conftest import RunMatokit
from tests.fakematomo import SUPERUSER_TOKEN, FakeMatomo


def test_version_prints_name_and_version(run_matokit: RunMatokit) -> None:
    result = run_matokit("--version")
    assert result.code == 0, result
    assert result.stdout.startswith("matokit "), result
    version = result.stdout.split()[1]
    assert version.count(".") == 2, result


def test_python_dash_m_matches_the_executable(run_matokit: RunMatokit) -> None:
    result = run_matokit("--version")
    module = subprocess.run(
        [sys.executable, "-m", "matokit", "--version"], capture_output=True, text=True, timeout=60
    )
    assert (module.returncode, module.stdout) == (result.code, result.stdout)


def test_config_show_reports_the_url_from_the_environment(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo
) -> None:
    result = run_matokit(
        "config",
        "show",
        env={"MATOMO_URL": fake_matomo.url, "MATOMO_SITE_ID": "1", "MATOMO_TOKEN": SUPERUSER_TOKEN},
    )
    assert result.code == 0, result
    assert fake_matomo.url.rstrip("/") in result.stdout, result
    # The token is shown as set, never printed.
    assert SUPERUSER_TOKEN not in result.output, result
