"""Run MatoKit's benchmarks and print each figure against its baseline.

    python bench/run.py [--quick] [--only NAME]

Every bench/*.py except this file and _*.py is a benchmark exposing
`run(quick: bool) -> list[dict]`; each dict is one figure (see bench/_util.py `figure`).
Results also go to bench/results.json. Benchmarks are never part of the test suite.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import platform
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# The repository root makes `tests.fakematomo` and `bench._util` importable; bench/ makes `_util`.
for path in (str(REPO), str(BENCH)):
    if path not in sys.path:
        sys.path.insert(0, path)

FIELDS = ("name", "value", "unit", "baseline_name", "baseline", "ratio", "target", "met")


def discover() -> dict[str, Path]:
    return {
        p.stem: p
        for p in sorted(BENCH.glob("*.py"))
        if p.name != "run.py" and not p.name.startswith("_")
    }


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench.{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def check(figures: Any, name: str) -> list[dict[str, Any]]:
    if not isinstance(figures, list) or not all(isinstance(f, dict) for f in figures):
        raise TypeError(f"{name}.run() must return a list of dicts")
    for fig in figures:
        missing = [k for k in FIELDS if k not in fig]
        if missing:
            raise TypeError(f"{name}: figure {fig.get('name')!r} lacks {', '.join(missing)}")
    return figures


def _num(value: Any, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    number = float(value)
    text = f"{number:,.0f}" if abs(number) >= 1000 else f"{number:.3g}"
    return f"{text} {unit}".strip()


def table(rows: list[dict[str, Any]]) -> str:
    header = ("figure", "value", "baseline", "ratio", "target", "met")
    lines = [
        (
            str(f["name"]),
            _num(f["value"], f["unit"]),
            f"{_num(f['baseline'], f['unit'])} ({f['baseline_name']})",
            _num(f["ratio"]) + ("x" if _num(f["ratio"]) != "-" else ""),
            f["target"] or "-",
            {True: "yes", False: "NO", None: "-"}[f["met"]],
        )
        for f in rows
    ]
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in lines]
    return "\n".join(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run MatoKit benchmarks.")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--only", metavar="NAME", help="run one benchmark (file name, no .py)")
    parser.add_argument("--list", action="store_true", help="list benchmarks and exit")
    parser.add_argument("--output", type=Path, default=BENCH / "results.json")
    args = parser.parse_args(argv)

    found = discover()
    if args.list:
        print("\n".join(found))
        return 0
    if args.only:
        if args.only not in found:
            parser.error(f"no benchmark {args.only!r}; have: {', '.join(found) or 'none'}")
        found = {args.only: found[args.only]}

    figures: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    started = time.time()
    for name, path in found.items():
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            module = load(name, path)
            figures += [dict(f, benchmark=name) for f in check(module.run(args.quick), name)]
        except Exception:
            errors[name] = traceback.format_exc()
            print(f"{name} failed:\n{errors[name]}", file=sys.stderr)

    if figures:
        print(table(figures))
    report = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "quick": args.quick,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": [{k: _jsonable(v) for k, v in f.items()} for f in figures],
        "errors": errors,
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.output}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
