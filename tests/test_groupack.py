"""Group commit of acknowledgements (delivery/groupack.py): every caller's ids written once,
callers return only after their own write, errors reach every caller of the failed write."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from matokit.delivery.groupack import GroupAck
from matokit.errors import StorageError


def test_concurrent_acks_are_written_once_each_and_share_writes() -> None:
    writes: list[list[str]] = []
    first_started = threading.Event()
    release = threading.Event()

    def write(ids: Sequence[str]) -> None:
        writes.append(list(ids))
        if len(writes) == 1:
            first_started.set()
            assert release.wait(10)

    acks = GroupAck(write)
    returned: list[int] = []
    first = threading.Thread(target=lambda: (acks.ack(["a0"]), returned.append(0)))
    first.start()
    assert first_started.wait(10)
    others = [
        threading.Thread(target=lambda i=i: (acks.ack([f"b{i}", f"c{i}"]), returned.append(i)))
        for i in range(1, 6)
    ]
    for thread in others:
        thread.start()
    while len(acks._queued) < 5:  # all five wait behind the first write
        time.sleep(0.001)
    assert returned == []  # nobody returns before its own ids are written
    release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert sorted(returned) == [0, 1, 2, 3, 4, 5]
    assert writes[0] == ["a0"]
    assert len(writes) == 2  # the five waiting callers shared one write
    assert sorted(writes[1]) == sorted(f"{p}{i}" for i in range(1, 6) for p in "bc")


def test_a_failed_write_raises_in_every_caller_it_carried() -> None:
    gate = threading.Event()
    calls: list[list[str]] = []

    def write(ids: Sequence[str]) -> None:
        calls.append(list(ids))
        if len(calls) == 1:
            assert gate.wait(10)
            return
        raise StorageError("disk full", path="j", hint="free space")

    acks = GroupAck(write)
    errors: list[BaseException] = []

    def call(ids: list[str]) -> None:
        try:
            acks.ack(ids)
        except StorageError as exc:
            errors.append(exc)

    first = threading.Thread(target=call, args=(["x"],))
    first.start()
    while not calls:
        time.sleep(0.001)
    late = [threading.Thread(target=call, args=([f"y{i}"],)) for i in range(3)]
    for thread in late:
        thread.start()
    while len(acks._queued) < 3:
        time.sleep(0.001)
    gate.set()
    for thread in [first, *late]:
        thread.join(10)
    assert len(errors) == 3  # the three carried by the failed write; the first succeeded
    with pytest.raises(StorageError):
        acks.ack(["z"])  # and the next write is tried afresh
