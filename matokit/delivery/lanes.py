"""Lanes: several bulks in flight, never two of the same visit.

A visit is one `log_visit` row that every one of its hits updates; bulks of one visit sent on
parallel connections deadlock in MariaDB (Matomo answers 500, `tracked: 0`, and rolls the bulk
back) or serialize. So hits go to lanes by the identity Matomo forms visits from, the way its
own log importer keeps each client on one recorder: a visitor id (`cid`), else a user id
(`uid`), else the IP and User-Agent (`cip`/`ua`, else this host's). `_id` does not keep visits
apart (Matomo merges hits of one IP and browser within 30 minutes whatever their `_id`), so it
does not choose a lane. A lane keeps its hits in order and has at most one bulk in flight.

`LaneWidth` decides how many lanes run: a fixed number, or `auto` (additive increase while the
rate rises and Matomo shows no strain; halved on a 429/503, a timeout or a rolled-back bulk).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

from matokit.client.tracking import hit_query

T = TypeVar("T")

MAX_CONCURRENCY: Final = 32
AUTO_START: Final = 2
AUTO_MAX: Final = 8
AUTO_EPOCH: Final = 8  # windows of bulks between two measurements under `auto`
_BODY_OVERHEAD: Final = 64  # {"requests":[...],"token_auth":"..."} around the items
_ITEM_OVERHEAD: Final = 4  # quotes and a comma per item


def parse_concurrency(text: str) -> int | None:
    """`auto` (None) or a number of lanes, 1 to MAX_CONCURRENCY; ValueError otherwise."""
    value = text.strip().lower()
    if value == "auto":
        return None
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{text!r} is not auto or a number of lanes") from None
    if not 1 <= number <= MAX_CONCURRENCY:
        raise ValueError(f"{number} lanes: use 1 to {MAX_CONCURRENCY}, or auto")
    return number


def lane_key(params: Mapping[str, str]) -> str:
    """The identity Matomo forms this hit's visit from (hits of one key share a lane)."""
    cid = params.get("cid")
    if cid:
        return "cid:" + cid.lower()
    uid = params.get("uid")
    if uid:
        return "uid:" + uid
    return "cfg:" + params.get("cip", "") + "|" + params.get("ua", "")


def lane_of(params: Mapping[str, str], width: int) -> int:
    """The lane (0..width-1) of a hit: a stable hash of its identity."""
    if width <= 1:
        return 0
    digest = hashlib.blake2b(lane_key(params).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % width


def partition(items: Sequence[T], params: Sequence[Mapping[str, str]], width: int) -> list[list[T]]:
    """`items` split into `width` lanes by their hits' identities, each in its given order;
    empty lanes are dropped."""
    lanes: list[list[T]] = [[] for _ in range(max(width, 1))]
    for item, hit in zip(items, params, strict=True):
        lanes[lane_of(hit, width)].append(item)
    return [lane for lane in lanes if lane]


def item_size(params: Mapping[str, str]) -> int:
    """The bytes one hit adds to a bulk's JSON body (its query string and separators)."""
    return len(hit_query(params)) + 1 + _ITEM_OVERHEAD


def size_bound(params: Mapping[str, str]) -> int:
    """At least `item_size(params)`, without encoding anything: a character escapes to at most
    twelve bytes (%XX for each of its up to four UTF-8 bytes); `=` and `&` stay one byte."""
    chars = sum(map(len, params)) + sum(map(len, params.values()))
    return 12 * chars + 2 * len(params) + 1 + _ITEM_OVERHEAD


def next_bulk(
    items: Sequence[T],
    params: Callable[[T], Mapping[str, str]],
    *,
    max_count: int,
    max_bytes: int,
) -> list[T]:
    """The first bulk `bulks` would make of `items` (whose hits `params` gives), encoding
    their hits only when the cheap bound says the body might exceed `max_bytes`."""
    head = list(items[:max_count])
    if _BODY_OVERHEAD + sum(size_bound(params(item)) for item in head) <= max_bytes:
        return head
    sizes = [item_size(params(item)) for item in head]
    return next(bulks(head, sizes, max_count=max_count, max_bytes=max_bytes), [])


def bulks(
    items: Sequence[T], sizes: Sequence[int], *, max_count: int, max_bytes: int
) -> Iterator[list[T]]:
    """`items` in order, in bulks of at most `max_count` items and `max_bytes` of body (a lone
    item larger than `max_bytes` is a bulk of its own: the server decides)."""
    bulk: list[T] = []
    used = _BODY_OVERHEAD
    for item, size in zip(items, sizes, strict=True):
        if bulk and (len(bulk) >= max_count or used + size > max_bytes):
            yield bulk
            bulk, used = [], _BODY_OVERHEAD
        bulk.append(item)
        used += size
    if bulk:
        yield bulk


@dataclass
class LaneWidth:
    """How many lanes run: `fixed`, or adjusted by additive increase, multiplicative decrease.

    `observe(hits, seconds, strained)` after each window of bulks: strained (a 429/503, a
    timeout, a rolled-back bulk) halves the width; otherwise a rate at least 5 % above the best
    seen so far adds one lane (up to `ceiling`), and a rate below it keeps the width.
    """

    fixed: int | None = None
    ceiling: int = AUTO_MAX
    width: int = field(init=False)
    best_rate: float = field(default=0.0, init=False)
    widest: int = field(init=False)

    def __post_init__(self) -> None:
        if self.fixed is not None and not 1 <= self.fixed <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be 1..{MAX_CONCURRENCY}")
        self.width = self.fixed if self.fixed is not None else min(AUTO_START, self.ceiling)
        self.widest = self.width

    @property
    def auto(self) -> bool:
        return self.fixed is None

    def observe(self, hits: int, seconds: float, *, strained: bool) -> None:
        if not self.auto:
            return
        if strained:
            self.width = max(1, self.width // 2)
            self.best_rate = 0.0  # the server changed: measure again from here
            return
        if hits <= 0 or seconds <= 0:
            return
        rate = hits / seconds
        if rate >= self.best_rate * 1.05 and self.width < self.ceiling:
            self.best_rate = max(self.best_rate, rate)
            self.width += 1
            self.widest = max(self.widest, self.width)
        else:
            self.best_rate = max(self.best_rate, rate)
