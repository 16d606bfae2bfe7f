"""Helpers shared by the benchmarks: wall-clock timing, an isolated environment, a fake Matomo.

Benchmarks run from the repository root with the root on sys.path (bench/run.py sees to it),
so `tests.fakematomo` is importable and `python -m tests.fakematomo` works.
"""

from __future__ import annotations

import json
import math
import os
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MATOKIT = Path(sys.executable).parent / "matokit"


def isolated_env(tmp: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment like the e2e harness: own HOME/XDG/MatoKit dirs, no MATOMO_*/MATOKIT_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MATOMO_", "MATOKIT_"))}
    home = tmp / "home"
    dirs = {
        "XDG_CONFIG_HOME": home / ".config",
        "XDG_CACHE_HOME": home / ".cache",
        "XDG_DATA_HOME": home / ".local" / "share",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    env.update({k: str(v) for k, v in dirs.items()})
    env.update(
        HOME=str(home),
        MATOKIT_CONFIG=str(dirs["XDG_CONFIG_HOME"] / "matokit" / "config.toml"),
        MATOKIT_CACHE_DIR=str(dirs["XDG_CACHE_HOME"] / "matokit"),
        MATOKIT_DATA_DIR=str(dirs["XDG_DATA_HOME"] / "matokit"),
        NO_COLOR="1",
    )
    env.update(extra or {})
    return env


def _wall(cmd: Sequence[str], env: Mapping[str, str] | None) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        list(cmd),
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}"
        )
    return elapsed


def median_wall(cmd: list[str], runs: int, env: Mapping[str, str] | None = None) -> float:
    """Median wall time of `cmd` as a subprocess, in seconds (one unmeasured warm-up run)."""
    _wall(cmd, env)
    return statistics.median(_wall(cmd, env) for _ in range(max(1, runs)))


def median_walls(
    cmds: Mapping[str, list[str]], runs: int, env: Mapping[str, str] | None = None
) -> dict[str, float]:
    """Median wall times of several commands, run round-robin so drift hits all alike."""
    for cmd in cmds.values():
        _wall(cmd, env)  # warm the page cache
    samples: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(max(1, runs)):
        for name, cmd in cmds.items():
            samples[name].append(_wall(cmd, env))
    return {name: statistics.median(values) for name, values in samples.items()}


def time_call(fn: Callable[[], Any], runs: int) -> float:
    """Median wall time of fn() in this process, in seconds."""
    times = []
    for _ in range(max(1, runs)):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@contextmanager
def standalone_server(
    latency: float = 0.0,
    *,
    request_log: bool = False,
    startup_timeout: float = 10.0,
    extra_args: Sequence[str] = (),
) -> Iterator[str]:
    """Run `python -m tests.fakematomo --port 0` in its own process; yield its base URL.

    A separate process keeps the server off the benchmark's GIL. The request log is off by
    default so long runs do not grow its memory. `extra_args` go to the server as they are,
    e.g. ["--workers", "4", "--hit-cost", "0.002"]; read its counters with server_counters().
    """
    cmd = [sys.executable, "-m", "tests.fakematomo", "--port", "0"]
    if latency > 0:
        cmd += ["--latency", str(latency)]
    if not request_log:
        cmd.append("--no-request-log")
    cmd += list(extra_args)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], startup_timeout)
        url = proc.stdout.readline().strip() if ready else ""
        if not url.startswith("http://"):
            raise RuntimeError(f"fake Matomo did not start (exit {proc.poll()})")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server_counters(url: str) -> dict[str, int]:
    """The capacity counters of a fake Matomo (standalone_server's URL): rollbacks,
    max_concurrent_bulks, max_concurrent_bulks_per_visit, visit_lock_waits, ..."""
    from urllib.request import urlopen

    with urlopen(url.rstrip("/") + "/_fakematomo/counters", timeout=10) as resp:
        counters: dict[str, int] = json.load(resp)
    return counters


def figure(
    name: str,
    value: float,
    unit: str,
    baseline_name: str,
    baseline: float,
    target: str | None = None,
    met: bool | None = None,
) -> dict[str, Any]:
    """One benchmark figure in the shape bench/run.py prints and saves."""
    ratio = value / baseline if baseline else math.nan
    return {
        "name": name,
        "value": float(value),
        "unit": unit,
        "baseline_name": baseline_name,
        "baseline": float(baseline),
        "ratio": ratio,
        "target": target,
        "met": met,
    }


def write_lines(path: Path, count: int, tag: str = "bench") -> None:
    """Realistic `track import` event lines: an id unique to `tag`, a time within the last day,
    names and values."""
    now = int(time.time())
    with open(path, "w") as out:
        for i in range(count):
            record = {
                "type": "event",
                "category": "bench",
                "action": f"action-{i % 50}",
                "name": f"name-{i % 997}",
                "value": i % 1000,
                "id": f"{tag}-{i}",
                "at": now - 60 - i % 80_000,
                "visitor_id": f"{i % 65_536:016x}",
            }
            out.write(json.dumps(record) + "\n")
