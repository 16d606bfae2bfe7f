"""Builders for each hit type: pageview, event, goal, order (the `track` commands).

Each builder checks its own fields, then `_build` adds what every hit has (site, visitor,
user, dimensions, extra params, time, `rand`) and the checks that apply to every hit.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Unpack

from matokit.errors import HitValidationError
from matokit.hits.model import CommonFields, Hit, OrderItem
from matokit.hits.validate import (
    MAX_ORDER_ID,
    _check_dimension,
    _check_item,
    _check_key,
    _check_number,
    _check_params,
    _check_positive_int,
    _check_text,
    _check_url,
    _check_user_id,
    _check_visitor_id,
    _format_number,
    _param_value,
    parse_time,
)

# Parameters MatoKit sets itself; builders refuse them as extra params.
_RESERVED = ("idsite", "rec", "apiv", "cdt", "rand")


def pageview(
    site_id: int, *, url: str, title: str | None = None, **common: Unpack[CommonFields]
) -> Hit:
    """Build a pageview hit (`url`, optional page `title`)."""
    action: dict[str, str] = {"url": _check_url(url)}
    if title is not None:
        action["action_name"] = _check_text(title, "title", "give a non-empty page title")
    return _build(site_id, action, common)


def event(
    site_id: int,
    *,
    category: str,
    action: str,
    name: str | None = None,
    value: float | int | str | None = None,
    **common: Unpack[CommonFields],
) -> Hit:
    """Build an event hit; Matomo needs both category and action (else it records a pageview)."""
    fields = {
        "e_c": _check_text(category, "category", "give the event a non-empty --category"),
        "e_a": _check_text(action, "action", "give the event a non-empty --action"),
    }
    if name is not None:
        fields["e_n"] = _check_text(name, "name", "give a non-empty --name or leave it out")
    if value is not None:
        fields["e_v"] = _format_number(_check_number(value, "value", allow_negative=True))
    # ca=1: if the Events plugin is off, Matomo drops the hit instead of counting a pageview.
    fields["ca"] = "1"
    return _build(site_id, fields, common)


def goal(
    site_id: int,
    *,
    goal_id: int | str,
    revenue: float | int | str | None = None,
    **common: Unpack[CommonFields],
) -> Hit:
    """Build a manual goal conversion (`idgoal`, optional `revenue`)."""
    fields = {"idgoal": str(_check_positive_int(goal_id, "goal"))}
    if revenue is not None:
        fields["revenue"] = _format_number(_check_number(revenue, "revenue"))
    return _build(site_id, fields, common)


def order(
    site_id: int,
    *,
    order_id: str,
    revenue: float | int | str,
    items: Iterable[OrderItem | Sequence[Any] | Mapping[str, Any]] = (),
    **common: Unpack[CommonFields],
) -> Hit:
    """Build an ecommerce order (`idgoal=0`, `ec_id`, `revenue`, `ec_items`).

    Items may be `OrderItem`s, `(sku, name, price, quantity)` tuples or mappings with those
    keys (plus optional `category`). Matomo ignores an order whose id it has already seen.
    """
    order_id = _check_text(order_id, "order_id", "give a non-empty --order-id")
    if len(order_id) > MAX_ORDER_ID:
        raise HitValidationError(
            f"Order id is {len(order_id)} characters long; Matomo stores at most {MAX_ORDER_ID}.",
            field="order_id",
            hint="use a shorter order id",
        )
    fields = {
        "idgoal": "0",
        "ec_id": order_id,
        "revenue": _format_number(_check_number(revenue, "revenue")),
    }
    lines = [_check_item(item, index) for index, item in enumerate(items)]
    if lines:
        fields["ec_items"] = json.dumps(
            [[i.sku, i.name, i.category, i.price, i.quantity] for i in lines],
            separators=(",", ":"),
            ensure_ascii=False,
        )
    return _build(site_id, fields, common)


def _build(site_id: int | str, action: dict[str, str], common: CommonFields) -> Hit:
    clock = common.get("clock", time.time)
    rng = common.get("rng", random.random)
    now = clock()
    params = {"idsite": str(_check_positive_int(site_id, "site_id")), "rec": "1", "apiv": "1"}
    params.update(action)
    if common.get("visitor_id") is not None:
        params["cid"] = _check_visitor_id(common["visitor_id"], "visitor_id")
    if common.get("user_id") is not None:
        params["uid"] = _check_user_id(common["user_id"], "user_id")
    for number, value in (common.get("dimensions") or {}).items():
        params[f"dimension{_check_positive_int(number, 'dimension')}"] = _check_dimension(value)
    checked = set(params)  # validated above (extra params below are checked by _check_params)
    for name, value in (common.get("params") or {}).items():
        if name in _RESERVED:
            raise HitValidationError(
                f"Parameter {name!r} is set by MatoKit and cannot be given as an extra param.",
                field=f"params.{name}",
                hint="use --site for idsite and --at for the hit's time",
            )
        if name in params:
            raise HitValidationError(
                f"Parameter {name!r} is already set by this hit's options.",
                field=f"params.{name}",
                hint=f"remove the extra {name}=... param",
            )
        params[name] = _param_value(name, value)
    params["cdt"] = str(int(parse_time(common.get("at"), now=now)))
    params["rand"] = _rand(rng)
    valid = _check_params(params, now=now, checked=checked)
    return Hit(params=valid, created_at=now, key=_check_key(common.get("key")))


def _rand(rng: Callable[[], float]) -> str:
    return str(int(rng() * 1_000_000_000))
