"""contrib/prometheus/matokit-alerts.yml: valid for Prometheus, unit-tested with promtool (each
rule fires on the series it is for and stays silent on the others), complete enough for the
person it pages, and built only on series MatoKit exposes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from matokit.health.series import series_names
from tests.promtool import check_rules, run_rule_tests

CONTRIB = Path(__file__).resolve().parent.parent / "contrib" / "prometheus"
RULES = CONTRIB / "matokit-alerts.yml"
RULE_TESTS = CONTRIB / "matokit-alerts.test.yml"
SEVERITIES = {"page", "ticket"}
# A metric name inside a PromQL expression (MatoKit's own; `up` is Prometheus').
METRIC = re.compile(r"\bmatokit_[a-z0-9_]+")


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_rules_file() -> None:
    output = check_rules(RULES)
    assert f"SUCCESS: {len(_rules())} rules found" in output


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    output = run_rule_tests(RULE_TESTS)
    assert "SUCCESS" in output


def test_every_rule_is_an_alert_with_for_severity_and_a_runbook() -> None:
    rules = _rules()
    names = [rule.get("alert") for rule in rules]
    assert all(names), "recording rules belong elsewhere"
    assert len(names) == len(set(names)), names
    for rule in rules:
        assert re.fullmatch(r"\d+[mh]", str(rule.get("for", ""))), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        notes = rule["annotations"]
        assert set(notes) == {"summary", "description", "runbook"}, rule["alert"]
        assert all(str(text).strip() for text in notes.values()), rule["alert"]
        # The first command to run, for the profile or host that fired (absent() has none).
        if "absent(" not in rule["expr"]:
            assert re.search(r"\{\{ \$labels\.(profile|instance) \}\}", notes["runbook"]), notes


def test_every_rule_is_tested_firing_and_not_firing() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())
    assert cases["rule_files"] == [RULES.name]
    fires: set[str] = set()
    silent: set[str] = set()
    for group in cases["tests"]:
        for case in group["alert_rule_test"]:
            (fires if case["exp_alerts"] else silent).add(case["alertname"])
    names = {rule["alert"] for rule in _rules()}
    assert names - fires == set(), "rules never shown firing"
    assert names - silent == set(), "rules never shown silent"
    assert (fires | silent) - names == set(), "tests of rules that do not exist"


def test_the_rules_query_only_series_matokit_exposes() -> None:
    exposed = set(series_names())
    used = {name for rule in _rules() for name in METRIC.findall(rule["expr"])}
    assert used - exposed == set()
    # The metrics the issue names are alerted on.
    for name in (
        "matokit_api_reachable",
        "matokit_api_token_accepted",
        "matokit_tracking_failures",
        "matokit_last_flush_timestamp_seconds",
        "matokit_health_run_timestamp_seconds",
        "matokit_replay_admin_access",
    ):
        assert name in used, name
