"""Field checks and the hit's time, stricter than Matomo's own (see the package docstring).

Every refusal is a `HitValidationError` naming the field and the fix.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from typing import Any

from matokit.errors import HitValidationError
from matokit.hits.model import _FORBIDDEN, OrderItem, TimeLike
from matokit.times import utc_iso

# A `cdt` this far in the future is treated as clock skew and clamped to "now"; beyond it the
# caller made a mistake (Matomo would silently record the hit at its own "now").
FUTURE_SKEW = 60.0
# Matomo ignores a `cdt` older than 20 x 365 days and records the hit "now" instead.
MAX_AGE = 20 * 365 * 86400.0 - 86400.0

MAX_USER_ID = 200
MAX_DIMENSION_VALUE = 255
MAX_ORDER_ID = 100

_CID_RE = re.compile(r"^[0-9a-fA-F]{16}$")
_DIMENSION_RE = re.compile(r"^dimension(\d+)$")
_NUMERIC_TIME_RE = re.compile(r"^\d+(\.\d+)?$")


# --- time --------------------------------------------------------------------------------------


def parse_time(value: TimeLike | None, *, now: float, field: str = "at") -> float:
    """Return the hit's time as Unix seconds, checked against `now`.

    Accepts None (now), Unix seconds (number or digits), ISO 8601 / `YYYY-MM-DD HH:MM:SS`
    strings and datetimes; naive values are UTC, like Matomo's `cdt`. Up to 60 s in the future
    is clock skew and clamped to `now`; further is refused, as is anything older than Matomo
    accepts (20 years).
    """
    if value is None:
        return now
    seconds = _to_seconds(value, field)
    if seconds > now + FUTURE_SKEW:
        raise HitValidationError(
            f"{field} {utc_iso(seconds)} is in the future (now is {utc_iso(now)}); Matomo would "
            "record the hit at its own current time instead.",
            field=field,
            hint="give a past time in UTC, e.g. 2024-05-01T10:00:00Z, or leave it out for now",
        )
    if seconds < now - MAX_AGE:
        raise HitValidationError(
            f"{field} {utc_iso(seconds)} is older than Matomo accepts (20 years).",
            field=field,
            hint="check the time's unit (seconds, not milliseconds) and format",
        )
    return min(seconds, now)


def _to_seconds(value: TimeLike, field: str) -> float:
    if isinstance(value, bool):
        raise _bad_time(value, field)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise _bad_time(value, field)
        return float(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.timestamp()
    if isinstance(value, str):
        text = value.strip()
        if _NUMERIC_TIME_RE.match(text):
            return float(text)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise _bad_time(value, field) from None
        return _to_seconds(moment, field)
    raise _bad_time(value, field)


def _bad_time(value: object, field: str) -> HitValidationError:
    return HitValidationError(
        f"{field} {value!r} is not a time MatoKit understands.",
        field=field,
        hint="use ISO 8601 (2024-05-01T10:00:00Z, UTC when no offset) or Unix seconds",
    )


# --- field checks ------------------------------------------------------------------------------


def _check_params(
    params: dict[str, str], *, now: float, checked: AbstractSet[str] = frozenset()
) -> dict[str, str]:
    """Checks that apply to every hit, whichever way it was built. `checked` names parameters
    a builder has already validated (their own checks are not run again)."""
    if not params.keys().isdisjoint(_FORBIDDEN):
        for name, hint in _FORBIDDEN.items():
            if name in params:
                raise HitValidationError(
                    f"Parameter {name!r} is not allowed in a hit.", field=name, hint=hint
                )

    # The parameters still to check, in their order (a dict: ordered, quick to look up).
    todo = dict.fromkeys(name for name in params if name not in checked)

    def unchecked(name: str) -> bool:
        return name in todo

    if unchecked("idsite"):
        params["idsite"] = str(_check_positive_int(params["idsite"], "idsite"))
    if unchecked("cid"):
        params["cid"] = _check_visitor_id(params["cid"], "cid")
    if unchecked("uid"):
        params["uid"] = _check_user_id(params["uid"], "uid")
    for name in [name for name in todo if name.startswith("dimension")]:
        match = _DIMENSION_RE.match(name)
        if match and int(match.group(1)) < 1:
            raise HitValidationError(
                f"{name} is not a custom dimension: ids start at 1.",
                field=name,
                hint="use dimensionN with N the dimension's id",
            )
        if match:
            _check_dimension(params[name], field=name)
    if unchecked("e_c") or unchecked("e_a"):
        has_category = bool(params.get("e_c", "").strip())
        has_action = bool(params.get("e_a", "").strip())
        if not (has_category and has_action):
            raise HitValidationError(
                "An event needs both e_c (category) and e_a (action); with one alone Matomo "
                "silently records a pageview.",
                field="e_a" if has_category else "e_c",
                hint="give both e_c and e_a",
            )
    if unchecked("e_v"):
        _check_number(params["e_v"], "e_v", allow_negative=True)
    if unchecked("idgoal"):
        _check_int(params["idgoal"], "idgoal", minimum=0)
    if unchecked("revenue"):
        _check_number(params["revenue"], "revenue")
    if unchecked("ec_items"):
        try:
            items = json.loads(params["ec_items"])
        except ValueError:
            items = None
        if not isinstance(items, list):
            raise HitValidationError(
                "ec_items is not a JSON list.",
                field="ec_items",
                hint='use [["sku","name","category",price,qty], ...]',
            )
    return params


def _param_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and math.isfinite(value):
        return _format_number(value)
    raise HitValidationError(
        f"Parameter {name!r} has a {type(value).__name__} value; only strings and numbers "
        "are Tracking API values.",
        field=f"params.{name}",
        hint="give the value as a string",
    )


def _check_url(url: Any) -> str:
    text = _check_text(url, "url", "give the page's full URL, e.g. https://example.com/page")
    scheme, sep, rest = text.partition("://")
    if not sep or not scheme.isascii() or not scheme.isalpha() or not rest:
        raise HitValidationError(
            f"url {text!r} is not an absolute URL.",
            field="url",
            hint="give the page's full URL, e.g. https://example.com/page",
        )
    return text


def _check_text(value: Any, field: str, hint: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise HitValidationError(f"{field} must be a non-empty string.", field=field, hint=hint)
    return value


def _check_visitor_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _CID_RE.match(value):
        raise HitValidationError(
            f"{field} {value!r} must be exactly 16 hexadecimal characters; Matomo rejects "
            "anything else.",
            field=field,
            hint="use e.g. the first 16 hex characters of a hash of your visitor's id",
        )
    return value.lower()


def _check_user_id(value: Any, field: str) -> str:
    text = _check_text(value, field, "give a non-empty user id")
    if len(text) > MAX_USER_ID:
        raise HitValidationError(
            f"{field} is {len(text)} characters long; Matomo stores at most {MAX_USER_ID}.",
            field=field,
            hint="use a shorter user id",
        )
    return text


def _check_dimension(value: Any, field: str = "dimension") -> str:
    if not isinstance(value, str):
        raise HitValidationError(
            f"{field} value must be a string.", field=field, hint="use --dimension N=VALUE"
        )
    if len(value) > MAX_DIMENSION_VALUE:
        raise HitValidationError(
            f"{field} value is {len(value)} characters long; Matomo stores at most "
            f"{MAX_DIMENSION_VALUE}.",
            field=field,
            hint="shorten the value",
        )
    return value


def _check_key(key: Any) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not key.strip():
        raise HitValidationError(
            "The idempotency key (id) must be a non-empty string.",
            field="id",
            hint="use a unique string per hit, e.g. the source record's id",
        )
    return key


def _check_positive_int(value: Any, field: str) -> int:
    return _check_int(value, field, minimum=1)


def _check_int(value: Any, field: str, *, minimum: int) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or number < minimum:
        raise HitValidationError(
            f"{field} {value!r} must be an integer of at least {minimum}.",
            field=field,
            hint=f"give {field} as a whole number >= {minimum}",
        )
    return number


def _check_number(value: Any, field: str, *, allow_negative: bool = False) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or (number < 0 and not allow_negative):
        kind = "a number" if allow_negative else "a number >= 0"
        raise HitValidationError(
            f"{field} {value!r} must be {kind}.",
            field=field,
            hint=f"give {field} as a plain number, e.g. 12.5",
        )
    return number


def _check_item(item: Any, index: int) -> OrderItem:
    field = f"items[{index}]"
    if isinstance(item, OrderItem):
        raw: Mapping[str, Any] = item.__dict__
    elif isinstance(item, Mapping):
        raw = {**item, "quantity": item.get("quantity", item.get("qty"))}
    elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 4:
        raw = dict(zip(("sku", "name", "price", "quantity"), item, strict=True))
    else:
        raise HitValidationError(
            f"{field} is not an order item.",
            field=field,
            hint="give items as SKU,NAME,PRICE,QTY",
        )
    category = raw.get("category") or ""
    if not isinstance(category, str):
        raise HitValidationError(
            f"{field}.category must be a string.", field=field, hint="give a category name"
        )
    return OrderItem(
        sku=_check_text(raw.get("sku"), field + ".sku", "give each item a SKU"),
        name=_check_text(raw.get("name"), field + ".name", "give each item a name"),
        price=_check_number(raw.get("price"), field + ".price"),
        quantity=_check_positive_int(raw.get("quantity"), field + ".quantity"),
        category=category,
    )


def _format_number(value: float | int) -> str:
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return repr(float(value))
