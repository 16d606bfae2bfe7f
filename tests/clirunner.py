"""Run the CLI in-process (fast) and capture its exit code, stdout and stderr."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass

import pytest


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def invoke(capsys: pytest.CaptureFixture[str], *args: str, stdin: str | None = None) -> Result:
    """`matokit ARGS` in this process, exactly as `matokit.cli.run` handles it."""
    from matokit.cli import run

    capsys.readouterr()
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        code = run(list(args))
    finally:
        sys.stdin = saved
    out, err = capsys.readouterr()
    return Result(code, out, err)
