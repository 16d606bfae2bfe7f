"""The series table (matokit.health.series): one entry per series, the checks' metric keys
declared from it, names and HELP texts every reader accepts."""

from __future__ import annotations

import re

from matokit.health import CHECKS, STANDARD_CHECKS
from matokit.health.series import CHECK_SERIES, RUN_SERIES, metric_keys, series_names

NAME = re.compile(r"matokit_[a-z][a-z0-9_]*")


def test_every_standard_check_has_its_series_and_declares_their_keys() -> None:
    assert tuple(CHECK_SERIES) == CHECKS
    for check in CHECKS:
        assert STANDARD_CHECKS[check].metrics == metric_keys(check), check


def test_names_are_unique_valid_and_help_texts_plain() -> None:
    names = series_names()
    assert len(names) == len(set(names))
    for series in [*RUN_SERIES, *(s for all_ in CHECK_SERIES.values() for s in all_)]:
        assert NAME.fullmatch(series.name), series.name
        # OpenMetrics escapes a double quote in HELP as \", which the text format (and
        # promtool check metrics, which reads only that) refuses: keep HELP free of both.
        assert series.help.endswith(".") and not set(series.help) & {'"', "\\", "\n"}, series
        assert (series.key is None) or (series.info is None), series
        if series.info is not None:
            assert len(series.labels) == 1, series
