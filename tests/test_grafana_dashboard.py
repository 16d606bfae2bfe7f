"""contrib/grafana/matokit.json: a dashboard Grafana imports as is (valid JSON, its own
datasource variable, panels laid out on the grid), whose every query is valid PromQL over
series a real health run exposes, and which shows what the issue asks for."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from matokit.cli.health_render import render_prometheus
from matokit.config import resolve
from matokit.health import Status, run_health
from tests.fakematomo import SUPERUSER_TOKEN, FakeMatomo
from tests.promtool import check_rules

DASHBOARD = Path(__file__).resolve().parent.parent / "contrib" / "grafana" / "matokit.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"row", "stat", "state-timeline", "timeseries", "table"}
METRIC = re.compile(r"\b(matokit_[a-z0-9_]+)")


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels() -> list[dict[str, Any]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def _queries() -> list[str]:
    """Every PromQL expression: the panels' and the template variables'."""
    exprs = [t["expr"] for p in _panels() for t in p["targets"]]
    variables = _dashboard()["templating"]["list"]
    exprs += [v["query"]["query"] for v in variables if v["type"] == "query"]
    return exprs


def test_the_dashboard_is_importable_as_is() -> None:
    board = _dashboard()
    assert board["title"] and board["uid"] and isinstance(board["schemaVersion"], int)
    assert "id" not in board  # Grafana assigns it; a fixed one clashes on import
    variables = {v["name"]: v for v in board["templating"]["list"]}
    # Its own datasource variable: no __inputs to fill, any Prometheus can be picked.
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    used = set(re.findall(r"\$\{?(\w+)", DASHBOARD.read_text())) - {
        "labels",
        "value",
        "__rate_interval",
    }
    assert used <= set(variables), used - set(variables)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels():
        assert panel["type"] in PANEL_TYPES, panel["title"]
        assert panel["title"] and panel["description"], panel
        assert panel["datasource"] == DATASOURCE, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert all(t["datasource"] == DATASOURCE and t["expr"] for t in panel["targets"])


def test_panels_sit_on_the_grid_without_overlapping() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in _dashboard()["panels"]:
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("x", "y", "w", "h")), panel["title"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]


def test_every_query_is_promql_promtool_accepts(tmp_path: Path) -> None:
    # promtool has no "check query": each expression becomes a recording rule, with the
    # dashboard's variables as Grafana substitutes them.
    rules = [
        {
            "record": f"dashboard:query_{n}",
            "expr": expr.replace("$profile", ".*").replace("$instance", ".*"),
        }
        for n, expr in enumerate(_queries())
        if not expr.startswith("label_values(")
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in check_rules(path)


def test_every_metric_queried_is_in_a_real_exposition(fake_matomo: FakeMatomo) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MATOMO_", "MATOKIT_"))}
    env["MATOMO_TOKEN"] = SUPERUSER_TOKEN
    report = run_health(lambda: resolve({"--url": fake_matomo.url, "--site": "1"}, env=env))
    assert report.status is Status.OK, report
    exposed = {f.name for f in text_string_to_metric_families(render_prometheus(report))}
    queried = {name for expr in _queries() for name in METRIC.findall(expr)}
    assert queried - exposed == set()


@pytest.mark.parametrize(
    ("shows", "metric"),
    [
        ("status per check and profile", "matokit_check_status"),
        ("overall status", "matokit_health_status"),
        ("queue depth", "matokit_queue_depth"),
        ("queue age", "matokit_queue_oldest_age_seconds"),
        ("delivery rate", "deriv(matokit_queue_depth"),
        ("latency", "matokit_api_latency_seconds"),
        ("last flush", "matokit_last_flush_timestamp_seconds"),
        ("dead letters", "matokit_queue_dead_letters"),
        ("Matomo down", "matokit_api_reachable"),
        ("token refused", "matokit_api_token_accepted"),
    ],
)
def test_the_dashboard_shows(shows: str, metric: str) -> None:
    assert any(metric in expr for expr in _queries()), shows
