"""The suite is complete in a clean clone: nothing it reads lives outside the repository."""

from __future__ import annotations

import json
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# A path into the workplace's shared folder, as code (comments and docstrings may cite it).
OUTSIDE = re.compile(r"""(["'])(/work/shared|\.\./shared)|parents\[2\]\s*/\s*["']shared""")


def test_no_test_module_reads_the_shared_folder() -> None:
    offenders = [
        f"{path.relative_to(TESTS)}:{number}"
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != Path(__file__).name
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if OUTSIDE.search(line.split("#", 1)[0])
    ]
    assert offenders == [], "copy what these read into tests/fixtures/"


def test_matomo_samples_fixture_holds_real_bodies() -> None:
    samples = json.loads((TESTS / "fixtures" / "matomo-samples.json").read_text())
    bodies = [v for v in samples.values() if isinstance(v, dict) and "body" in v]
    assert len(bodies) >= 10
