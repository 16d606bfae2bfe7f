"""docs/monitoring.md cannot drift from the code: its metric table and its copy of the alert
rules are generated (tests/monitoring_docs.py), and every metric it names is exposed."""

from __future__ import annotations

import re

import pytest

from matokit.health.series import series_names
from tests import monitoring_docs

FIX = "run `python -m tests.monitoring_docs` to regenerate it"


@pytest.mark.parametrize("name", sorted(monitoring_docs.BLOCKS))
def test_generated_block_is_current(name: str) -> None:
    found = monitoring_docs.blocks_in(monitoring_docs.DOC.read_text())
    assert name in found, f"docs/monitoring.md lost its generated block {name!r}"
    assert found[name] == monitoring_docs.BLOCKS[name](), f"{name} in docs/monitoring.md: {FIX}"


def test_the_metric_table_lists_every_exposed_series_once() -> None:
    table = monitoring_docs.metrics_table()
    listed = re.findall(r"^\| `(matokit_[a-z0-9_]+)` \|", table, re.MULTILINE)
    assert sorted(listed) == sorted(series_names())
    assert len(listed) == len(set(listed))
    # The two the issue found missing from the hand-written table.
    assert {"matokit_replay_admin_access", "matokit_queue_possible_duplicates"} <= set(listed)


@pytest.mark.parametrize("doc", ["docs/monitoring.md", "docs/fleet.md"])
def test_every_metric_the_docs_name_is_exposed(doc: str) -> None:
    text = (monitoring_docs.ROOT / doc).read_text()
    named = set(re.findall(r"`(matokit_[a-z0-9_]+)", text))
    for block in re.findall(r"```(?:yaml|promql)\n(.*?)```", text, re.DOTALL):
        named |= set(re.findall(r"\b(matokit_[a-z0-9_]+)", block))
    assert named - set(series_names()) == set()


def test_regenerating_rewrites_a_stale_block_and_nothing_else() -> None:
    text = monitoring_docs.DOC.read_text()
    stale = text.replace("| `matokit_queue_depth` |", "| `matokit_queue_size` |")
    assert stale != text
    assert monitoring_docs.regenerated(stale) == monitoring_docs.regenerated(text)
    assert monitoring_docs.regenerated(text) == text
