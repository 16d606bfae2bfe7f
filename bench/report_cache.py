"""Report cache: a cached `matokit report visits` as a whole process vs uncached and vs --version.

The fake Matomo runs standalone with 200 ms latency per request, so an answer that needed the
network would show. Requests are counted with the cache's own counters (`cache stats`): every
API call of `report` goes through the cached session, so misses that do not grow across the
measured runs mean no request was made.

Bytecode: the runs use a private PYTHONPYCACHEPREFIX (and ignore PYTHONDONTWRITEBYTECODE) so
that, like an installed package, MatoKit is not recompiled on every start.

Figures:
  * cache hit as `matokit` runs it today (main() -> typer) vs `matokit --version`;
  * the same hit vs `--no-cache` (the cost of asking Matomo);
  * requests per cache hit (must be 0);
  * unless main() already calls it: the typer-free lean path (`report_show.try_cached`), run
    the way the proposed two-line hook in `matokit.cli.main` would run it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _util import MATOKIT, REPO, figure, isolated_env, median_walls, standalone_server

TARGET_RATIO = 1.5
LATENCY = 0.2
REPORT = ["report", "visits", "--format", "json"]
# What `matokit.cli.main` would do with the proposed hook (see the report to the maintainer).
HOOKED = (
    "import sys\n"
    "from matokit.cli import main\n"
    "args = sys.argv[1:]\n"
    "if 'report' in args:\n"
    "    from matokit.cli.report_show import try_cached\n"
    "    code = try_cached(args)\n"
    "    if code is not None:\n"
    "        sys.exit(code)\n"
    "main(args)\n"
)


def _hook_installed() -> bool:
    source = (REPO / "matokit" / "cli" / "__init__.py").read_text(encoding="utf-8")
    return "try_cached" in source


def _track(url: str, count: int = 20) -> None:
    """A few of today's visits, so the report has rows."""
    import requests

    from tests.fakematomo import SUPERUSER_TOKEN

    now = int(time.time()) - 60
    items = [
        f"?idsite=1&rec=1&url=https%3A%2F%2Fexample.org%2Fp{i % 4}&cid={i:016x}&cdt={now}"
        for i in range(count)
    ]
    requests.post(
        url + "matomo.php", json={"requests": items, "token_auth": SUPERUSER_TOKEN}, timeout=10
    ).raise_for_status()


def _stats(env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [str(MATOKIT), "cache", "stats", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return dict(json.loads(out.stdout))


def run(quick: bool) -> list[dict[str, Any]]:
    from tests.fakematomo import SUPERUSER_TOKEN

    runs = 5 if quick else 21
    hooked = not _hook_installed()
    with (
        tempfile.TemporaryDirectory(prefix="matokit-bench-") as tmp,
        standalone_server(LATENCY) as url,
    ):
        _track(url)
        env = isolated_env(
            Path(tmp),
            {
                "MATOMO_URL": url,
                "MATOMO_TOKEN": SUPERUSER_TOKEN,
                "MATOMO_SITE_ID": "1",
                "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache"),
            },
        )
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([str(MATOKIT), *REPORT], env=env, capture_output=True, check=True)
        before = _stats(env)
        commands = {
            "--version": [str(MATOKIT), "--version"],
            "hit": [str(MATOKIT), *REPORT],
            "no-cache": [str(MATOKIT), *REPORT, "--no-cache"],
        }
        if hooked:
            commands["lean"] = [sys.executable, "-c", HOOKED, *REPORT]
        walls = median_walls(commands, runs, env)
        after = _stats(env)
    hits = (runs + 1) * (2 if hooked else 1)  # median_walls adds one warm-up run per command
    requests_per_hit = (after["misses"] - before["misses"]) / hits
    ms = {name: value * 1000 for name, value in walls.items()}
    version = ms["--version"]
    figures = [
        figure(
            "report visits, cache hit (whole process)",
            ms["hit"],
            "ms",
            "matokit --version",
            version,
            target=f"<= {TARGET_RATIO}x --version, 0 requests",
            met=ms["hit"] <= TARGET_RATIO * version and requests_per_hit == 0,
        ),
        figure(
            "report visits, cache hit vs uncached",
            ms["hit"],
            "ms",
            f"--no-cache ({LATENCY * 1000:.0f} ms latency)",
            ms["no-cache"],
            target="hit < uncached",
            met=ms["hit"] < ms["no-cache"],
        ),
        figure(
            "requests per cache hit",
            requests_per_hit,
            "requests",
            "none allowed",
            0.0,
            target="0",
            met=requests_per_hit == 0,
        ),
    ]
    if hooked:
        figures.append(
            figure(
                "report visits, cache hit via main() hook (try_cached, proposed)",
                ms["lean"],
                "ms",
                "matokit --version",
                version,
                target=f"<= {TARGET_RATIO}x --version",
                met=ms["lean"] <= TARGET_RATIO * version,
            )
        )
    return figures
