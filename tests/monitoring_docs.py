"""The generated blocks of docs/monitoring.md: the metric table (from matokit.health.series,
what the renderer walks) and the alert rules (contrib/prometheus/matokit-alerts.yml, verbatim).

    python -m tests.monitoring_docs      # rewrite them after changing a series or a rule

tests/test_monitoring_docs.py fails while a block differs from what this writes. A block sits
between `<!-- generated: NAME ... -->` and `<!-- end: NAME -->`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from matokit.health.series import CHECK_SERIES, PROFILE_LABEL, RUN_SERIES, Series

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "monitoring.md"
RULES = ROOT / "contrib" / "prometheus" / "matokit-alerts.yml"


def _row(series: Series, check: str | None) -> str:
    labels = ", ".join(f"`{label}`" for label in (PROFILE_LABEL, *series.labels))
    if series.key is not None:
        source = f"`metrics.{series.key}`"
    elif series.info is not None:
        source = f"`info.{series.info}`"
    else:
        source = ""
    owner = f"`{check}`" if check else "(the run)"
    return f"| `{series.name}` | {labels} | {owner} | {source} | {series.help} |"


def metrics_table() -> str:
    """Every series, the run's first, then each check's in the order the checks run."""
    rows = [
        "| metric | labels | reported by | JSON | meaning |",
        "|---|---|---|---|---|",
    ]
    rows += [_row(series, None) for series in RUN_SERIES]
    rows += [
        _row(series, check) for check, all_series in CHECK_SERIES.items() for series in all_series
    ]
    return "\n".join(rows) + "\n"


def alert_rules() -> str:
    """The rules file as a YAML block."""
    return f"```yaml\n{RULES.read_text()}```\n"


BLOCKS: dict[str, Callable[[], str]] = {"metrics-table": metrics_table, "alert-rules": alert_rules}
_BLOCK = re.compile(
    r"(?P<head><!-- generated: (?P<name>[a-z-]+) [^>]*-->\n)"
    r"(?P<body>.*?)"
    r"(?P<tail><!-- end: (?P=name) -->)",
    re.DOTALL,
)


def blocks_in(text: str) -> dict[str, str]:
    """Each generated block's current text, by name."""
    return {m["name"]: m["body"] for m in _BLOCK.finditer(text)}


def regenerated(text: str) -> str:
    """`text` with every generated block rewritten."""
    return _BLOCK.sub(lambda m: m["head"] + BLOCKS[m["name"]]() + m["tail"], text)


def main() -> None:
    DOC.write_text(regenerated(DOC.read_text()))


if __name__ == "__main__":
    main()
