"""Validated tracking hits: everything is checked here, before anything is sent.

A `Hit` holds the exact Tracking API parameters that will go on the wire, including a fixed
`cdt` (the hit's time) and a fixed `rand`, so that a replay from the journal is the identical
request. It never holds a token: the client adds `token_auth` to the bulk body, not to hits.

Matomo accepts many bad hits silently (an event without an action becomes a pageview, a future
`cdt` becomes "now", `rec` missing means "not stored"), so the rules below are stricter than
Matomo's own: every refusal is a `HitValidationError` naming the field and the fix.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack

from matokit import __version__
from matokit.errors import HitValidationError

# Identifies MatoKit in Matomo's "browser" report. It must not contain any word Matomo's bot
# detection (device-detector's generic bot patterns) drops, nor a URL: such hits count as
# "tracked" in the bulk answer but are silently not stored.
USER_AGENT = f"MatoKit/{__version__} (command line; +matokit)"

# A `cdt` this far in the future is treated as clock skew and clamped to "now"; beyond it the
# caller made a mistake (Matomo would silently record the hit at its own "now").
FUTURE_SKEW = 60.0
# Matomo ignores a `cdt` older than 20 x 365 days and records the hit "now" instead.
MAX_AGE = 20 * 365 * 86400.0 - 86400.0

MAX_USER_ID = 200
MAX_DIMENSION_VALUE = 255
MAX_ORDER_ID = 100

# Parameters MatoKit sets itself; builders refuse them as extra params.
_RESERVED = ("idsite", "rec", "apiv", "cdt", "rand")
# Parameters never allowed in a hit at all.
_FORBIDDEN = {
    "token_auth": "put the token in MATOMO_TOKEN or the token file, never in hit parameters",
    "send_image": "remove it: MatoKit needs Matomo's JSON answer",
    "cdo": "give the hit's time as `at` (or `cdt`) instead of an offset",
}
_CID_RE = re.compile(r"^[0-9a-fA-F]{16}$")
_DIMENSION_RE = re.compile(r"^dimension(\d+)$")
_NUMERIC_TIME_RE = re.compile(r"^\d+(\.\d+)?$")

TimeLike = datetime | float | int | str


@dataclass(frozen=True)
class Hit:
    """One validated Tracking API request.

    `params` are the exact query parameters sent (never a token); `created_at` is when the hit
    was built (Unix seconds); `key` is the caller's idempotency key (import line `id`,
    `--idempotency-key`), if any.
    """

    params: dict[str, str]
    created_at: float
    key: str | None = None

    def __post_init__(self) -> None:
        if "token_auth" in self.params:
            raise HitValidationError(
                "A hit must not carry token_auth.",
                field="token_auth",
                hint=_FORBIDDEN["token_auth"],
            )

    @property
    def site_id(self) -> int:
        """The hit's idSite."""
        return int(self.params["idsite"])

    @property
    def time(self) -> int:
        """The hit's time (`cdt`) in Unix seconds, UTC."""
        return int(self.params["cdt"])


class CommonFields(TypedDict, total=False):
    """Options every hit type accepts (the CLI's common `track` options)."""

    visitor_id: str | None
    user_id: str | None
    dimensions: Mapping[int | str, str] | None
    params: Mapping[str, Any] | None
    at: TimeLike | None
    key: str | None
    clock: Callable[[], float]
    rng: Callable[[], float]


# --- builders ------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class OrderItem:
    """One ecommerce order line."""

    sku: str
    name: str
    price: float
    quantity: int
    category: str = ""


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
    checked = _check_params(params, now=now)
    return Hit(params=checked, created_at=now, key=_check_key(common.get("key")))


# --- raw parameters and import records -----------------------------------------------------


def hit_from_params(
    params: Mapping[str, Any],
    *,
    now: float,
    site_id: int | None = None,
    key: str | None = None,
    rng: Callable[[], float] = random.random,
) -> Hit:
    """Validate raw Tracking API parameters (import `{"params": ...}` lines, journal replays).

    `idsite` falls back to `site_id`; `rec=1` and `apiv=1` are added; `cdt` (Unix seconds or
    `YYYY-MM-DD HH:MM:SS` UTC) is normalised to Unix seconds, or set to `now` when absent;
    an existing `rand` is kept so that a replay is the identical request.
    """
    if not isinstance(params, Mapping):
        raise HitValidationError(
            "Hit parameters must be a JSON object.", field="params", hint='use {"params": {...}}'
        )
    out: dict[str, str] = {}
    for name, value in params.items():
        if not isinstance(name, str) or not name:
            raise HitValidationError(
                f"Parameter name {name!r} is not a non-empty string.",
                field="params",
                hint="use Tracking API parameter names such as url or e_c",
            )
        out[name] = _param_value(name, value)
    if "idsite" not in out:
        if site_id is None:
            raise HitValidationError(
                "The hit has no idsite.", field="idsite", hint="add idsite or set --site"
            )
        out["idsite"] = str(site_id)
    if out.get("rec", "1") != "1":
        raise HitValidationError(
            f"rec={out['rec']!r}: Matomo would answer success and store nothing.",
            field="rec",
            hint="remove rec or set rec=1",
        )
    out.setdefault("rec", "1")
    out.setdefault("apiv", "1")
    cdt = parse_time(out.get("cdt"), now=now, field="cdt")
    out["cdt"] = str(int(cdt))
    if "rand" not in out:
        out["rand"] = _rand(rng)
    return Hit(params=_check_params(out, now=now), created_at=now, key=_check_key(key))


_RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "pageview": ("url", "title"),
    "event": ("category", "action", "name", "value"),
    "goal": ("goal", "revenue"),
    "order": ("order_id", "revenue", "items"),
}
_COMMON_RECORD_FIELDS = (
    "type",
    "id",
    "at",
    "site_id",
    "visitor_id",
    "user_id",
    "dimensions",
    "params",
)


def hit_from_record(
    obj: Mapping[str, Any],
    *,
    site_id: int | None,
    now: float,
    rng: Callable[[], float] = random.random,
) -> Hit:
    """Build a hit from one import line.

    Shapes: `{"type": "pageview"|"event"|"goal"|"order", ...fields..., "at": ISO 8601 or Unix
    seconds, "id": optional key}` or `{"params": {...raw Tracking API params...}, "at": ...,
    "id": ...}`. With a `type`, `params` holds extra Tracking API parameters.
    """
    if not isinstance(obj, Mapping):
        raise HitValidationError(
            "An import line must be a JSON object.", field="line", hint='use {"type": ...}'
        )
    key = obj.get("id")
    key = None if key is None else _check_key(str(key) if isinstance(key, int) else key)
    if "type" not in obj:
        return _raw_record(obj, site_id=site_id, now=now, rng=rng, key=key)
    kind = obj["type"]
    if kind not in _RECORD_FIELDS:
        raise HitValidationError(
            f"Unknown hit type {kind!r}.",
            field="type",
            hint="use one of: " + ", ".join(_RECORD_FIELDS),
        )
    allowed = set(_RECORD_FIELDS[kind]) | set(_COMMON_RECORD_FIELDS)
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise HitValidationError(
            f"Unknown field {unknown[0]!r} for a {kind} hit.",
            field=unknown[0],
            hint="allowed fields: " + ", ".join(sorted(allowed)),
        )
    site = obj.get("site_id", site_id)
    if site is None:
        raise HitValidationError("The hit has no site.", field="site_id", hint="set --site")
    common: CommonFields = {
        "visitor_id": obj.get("visitor_id"),
        "user_id": obj.get("user_id"),
        "dimensions": _mapping(obj.get("dimensions"), "dimensions"),
        "params": _mapping(obj.get("params"), "params"),
        "at": obj.get("at"),
        "key": key,
        "clock": lambda: now,
        "rng": rng,
    }
    fields = {name: obj[name] for name in _RECORD_FIELDS[kind] if name in obj}
    if kind == "pageview":
        return pageview(site, url=_required(fields, "url"), title=fields.get("title"), **common)
    if kind == "event":
        return event(
            site,
            category=_required(fields, "category"),
            action=_required(fields, "action"),
            name=fields.get("name"),
            value=fields.get("value"),
            **common,
        )
    if kind == "goal":
        return goal(
            site, goal_id=_required(fields, "goal"), revenue=fields.get("revenue"), **common
        )
    items = fields.get("items", [])
    if not isinstance(items, list):
        raise HitValidationError(
            "items must be a list.", field="items", hint="use [[sku, name, price, qty], ...]"
        )
    return order(
        site,
        order_id=_required(fields, "order_id"),
        revenue=_required(fields, "revenue"),
        items=items,
        **common,
    )


def _raw_record(
    obj: Mapping[str, Any],
    *,
    site_id: int | None,
    now: float,
    rng: Callable[[], float],
    key: str | None,
) -> Hit:
    unknown = sorted(set(obj) - {"params", "id", "at"})
    if unknown or "params" not in obj:
        raise HitValidationError(
            f"An import line needs a 'type' or 'params' (found {', '.join(sorted(obj)) or '{}'}).",
            field=unknown[0] if unknown else "type",
            hint='use {"type": "pageview", "url": ...} or {"params": {...}}',
        )
    params = obj["params"]
    if not isinstance(params, Mapping):
        raise HitValidationError(
            "params must be a JSON object.", field="params", hint='use {"params": {...}}'
        )
    if obj.get("at") is not None:
        if "cdt" in params:
            raise HitValidationError(
                "Both 'at' and params.cdt give the hit's time.",
                field="at",
                hint="keep one of them",
            )
        params = {**params, "cdt": str(int(parse_time(obj["at"], now=now)))}
    return hit_from_params(params, now=now, site_id=site_id, key=key, rng=rng)


def _mapping(value: Any, field: str) -> Mapping[Any, Any] | None:
    if value is None or isinstance(value, Mapping):
        return value
    raise HitValidationError(f"{field} must be a JSON object.", field=field, hint="use {...}")


def _required(fields: Mapping[str, Any], name: str) -> Any:
    if fields.get(name) is None:
        raise HitValidationError(
            f"Missing required field {name!r}.", field=name, hint=f"add {name!r} to the line"
        )
    return fields[name]


# --- idempotency -----------------------------------------------------------------------------


def idempotency_key(hit: Hit) -> str:
    """A stable 32-hex key for the hit: the same hit (at the same time) gives the same key.

    With an explicit `hit.key` (import `id`, `--idempotency-key`) the key derives from it and
    the site; otherwise from the canonical parameters (sorted, without `rand`), which include
    the hit's time `cdt`.
    """
    if hit.key is not None:
        material = "key\x00" + hit.params.get("idsite", "") + "\x00" + hit.key
    else:
        canonical = sorted((k, v) for k, v in hit.params.items() if k != "rand")
        material = "params\x00" + json.dumps(canonical, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]


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
            f"{field} {_iso(seconds)} is in the future (now is {_iso(now)}); Matomo would "
            "record the hit at its own current time instead.",
            field=field,
            hint="give a past time in UTC, e.g. 2024-05-01T10:00:00Z, or leave it out for now",
        )
    if seconds < now - MAX_AGE:
        raise HitValidationError(
            f"{field} {_iso(seconds)} is older than Matomo accepts (20 years).",
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


def _iso(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return repr(seconds)


# --- field checks ------------------------------------------------------------------------------


def _check_params(params: dict[str, str], *, now: float) -> dict[str, str]:
    """Checks that apply to every hit, whichever way it was built."""
    for name, hint in _FORBIDDEN.items():
        if name in params:
            raise HitValidationError(
                f"Parameter {name!r} is not allowed in a hit.", field=name, hint=hint
            )
    params["idsite"] = str(_check_positive_int(params["idsite"], "idsite"))
    if "cid" in params:
        params["cid"] = _check_visitor_id(params["cid"], "cid")
    if "uid" in params:
        params["uid"] = _check_user_id(params["uid"], "uid")
    for name in list(params):
        match = _DIMENSION_RE.match(name)
        if match and int(match.group(1)) < 1:
            raise HitValidationError(
                f"{name} is not a custom dimension: ids start at 1.",
                field=name,
                hint="use dimensionN with N the dimension's id",
            )
        if match:
            _check_dimension(params[name], field=name)
    has_category = bool(params.get("e_c", "").strip())
    has_action = bool(params.get("e_a", "").strip())
    if ("e_c" in params or "e_a" in params) and not (has_category and has_action):
        raise HitValidationError(
            "An event needs both e_c (category) and e_a (action); with one alone Matomo "
            "silently records a pageview.",
            field="e_a" if has_category else "e_c",
            hint="give both e_c and e_a",
        )
    if "e_v" in params:
        _check_number(params["e_v"], "e_v", allow_negative=True)
    if "idgoal" in params:
        _check_int(params["idgoal"], "idgoal", minimum=0)
    if "revenue" in params:
        _check_number(params["revenue"], "revenue")
    if "ec_items" in params:
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


def _rand(rng: Callable[[], float]) -> str:
    return str(int(rng() * 1_000_000_000))
