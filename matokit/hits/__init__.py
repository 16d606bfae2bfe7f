"""Validated tracking hits: everything is checked here, before anything is sent.

A `Hit` holds the exact Tracking API parameters that will go on the wire, including a fixed
`cdt` (the hit's time) and a fixed `rand`, so that a replay from the journal is the identical
request. It never holds a token: the client adds `token_auth` to the bulk body, not to hits.

Matomo accepts many bad hits silently (an event without an action becomes a pageview, a future
`cdt` becomes "now", `rec` missing means "not stored"), so the rules below are stricter than
Matomo's own: every refusal is a `HitValidationError` naming the field and the fix.

Modules: `model` (Hit, OrderItem, CommonFields, USER_AGENT), `builders` (pageview, event,
goal, order), `records` (raw parameters, import lines, idempotency keys), `validate` (field
checks and the hit's time).
"""

from __future__ import annotations

from matokit.hits.builders import event, goal, order, pageview
from matokit.hits.model import USER_AGENT, CommonFields, Hit, OrderItem, TimeLike
from matokit.hits.records import hit_from_params, hit_from_record, idempotency_key
from matokit.hits.validate import (
    FUTURE_SKEW,
    MAX_AGE,
    MAX_DIMENSION_VALUE,
    MAX_ORDER_ID,
    MAX_USER_ID,
    parse_time,
)

__all__ = [
    "FUTURE_SKEW",
    "MAX_AGE",
    "MAX_DIMENSION_VALUE",
    "MAX_ORDER_ID",
    "MAX_USER_ID",
    "USER_AGENT",
    "CommonFields",
    "Hit",
    "OrderItem",
    "TimeLike",
    "event",
    "goal",
    "hit_from_params",
    "hit_from_record",
    "idempotency_key",
    "order",
    "pageview",
    "parse_time",
]
