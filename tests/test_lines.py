"""`LineParser.committed`: chunks parsed while the previous one commits, never written past the
result the caller holds, counts that match what was committed."""

from __future__ import annotations

import json
import threading

import pytest

from matokit.delivery.lines import LineParser
from matokit.errors import StorageError
from matokit.journal import NewHit

T0 = 1_700_000_000.0


def name(hit: NewHit) -> str:
    return hit.params["e_c"]


def lines(count: int, *, bad_every: int = 0) -> list[bytes]:
    out = []
    for i in range(count):
        if bad_every and i % bad_every == bad_every - 1:
            out.append(b"{not json\n")
        else:
            record = {"type": "event", "category": f"k{i}", "action": "a", "at": T0}
            out.append(json.dumps(record).encode() + b"\n")
    return out


def parser() -> LineParser:
    return LineParser(site_id=1, clock=lambda: T0 + 60, on_invalid=lambda n, m: None)


def test_every_chunk_is_committed_in_order_in_another_thread() -> None:
    commits: list[tuple[list[str], str]] = []

    def commit(chunk: list[NewHit]) -> int:
        commits.append(([name(h) for h in chunk], threading.current_thread().name))
        return len(chunk)

    p = parser()
    assert list(p.committed(lines(25, bad_every=5), 4, commit)) == [4, 4, 4, 4, 4]
    assert [key for keys, _ in commits for key in keys] == [
        f"k{i}" for i in range(25) if i % 5 != 4
    ]
    assert {name for _, name in commits} != {threading.current_thread().name}
    assert (p.read, p.invalid) == (25, 5)


def test_the_next_chunk_is_parsed_while_the_previous_one_commits() -> None:
    events: list[str] = []
    release = threading.Event()

    def on_invalid(number: int, message: str) -> None:
        events.append(f"parsed line {number}")
        release.set()  # the next chunk is being parsed: let the commit finish

    def commit(chunk: list[NewHit]) -> int:
        if not events:  # the first commit waits until parsing has gone on without it
            assert release.wait(10)
        events.append(f"committed {name(chunk[0])}")
        return len(chunk)

    p = LineParser(site_id=1, clock=lambda: T0 + 60, on_invalid=on_invalid)
    data = [*lines(2), b"{not json\n", *lines(1)]
    assert list(p.committed(data, 2, commit)) == [2, 1]
    assert events[:2] == ["parsed line 3", "committed k0"]


def test_stopping_at_a_result_commits_nothing_more_and_counts_only_what_was_committed() -> None:
    committed: list[int] = []

    def commit(chunk: list[NewHit]) -> int:
        committed.append(len(chunk))
        return len(chunk)

    p = parser()
    results = p.committed(lines(10, bad_every=3), 2, commit)
    assert next(results) == 2  # lines 1-2; lines 3-5 (one invalid) parsed ahead
    assert (p.read, p.invalid) == (5, 1)
    results.close()
    assert committed == [2]
    assert (p.read, p.invalid) == (2, 0)


def test_a_failed_commit_counts_the_lines_of_the_chunk_tried_not_the_one_parsed_ahead() -> None:
    def commit(chunk: list[NewHit]) -> int:
        if name(chunk[0]) == "k2":
            raise StorageError("Redis went away", path="redis://x")
        return len(chunk)

    p = parser()
    results = p.committed(lines(8), 2, commit)
    assert next(results) == 2
    with pytest.raises(StorageError):
        next(results)
    assert p.read == 4
