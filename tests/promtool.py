"""Prometheus' own `promtool` for the tests: lint an exposition, test the alert rules.

Debian's `prometheus` package provides it (`.ci/run` installs it when missing). Tests that
need it call `require_promtool()`: skipped on a developer's machine without it, a failure
under CI (`CI` set), so the claims it proves are never silently untested there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def available() -> bool:
    return Path(PROMTOOL).exists()


def require_promtool() -> None:
    """Skip (fail under CI) when promtool is not installed."""
    if available():
        return
    message = "promtool is not installed (Debian package prometheus; .ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _promtool(*args: str, stdin: str | None = None, cwd: Path | None = None) -> str:
    """Run promtool; its output, or a test failure with the output when it did not exit 0."""
    require_promtool()
    proc = subprocess.run(
        [PROMTOOL, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(f"promtool {' '.join(args)} exited {proc.returncode}:\n{output}")
    return output


def check_metrics(exposition: str, what: str = "the exposition") -> None:
    """`promtool check metrics`: the exposition parses and its linter has nothing to say
    (it exits 3 and lists the problems otherwise)."""
    output = _promtool("check", "metrics", stdin=exposition)
    assert output.strip() == "", f"promtool check metrics on {what}:\n{output}"


def check_rules(*files: Path) -> str:
    """`promtool check rules FILE...`: the rule files are valid."""
    return _promtool("check", "rules", *(str(f) for f in files))


def run_rule_tests(*files: Path) -> str:
    """`promtool test rules FILE...`: every unit test in the files passes."""
    return _promtool("test", "rules", *(str(f) for f in files), cwd=files[0].parent)
