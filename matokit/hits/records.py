"""Hits from raw parameters and import lines, and the idempotency key of a hit."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Mapping
from typing import Any

from matokit.errors import HitValidationError
from matokit.hits.builders import _rand, event, goal, order, pageview
from matokit.hits.model import CommonFields, Hit
from matokit.hits.validate import _check_key, _check_params, _param_value, parse_time

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


_ALLOWED_FIELDS: dict[str, frozenset[str]] = {
    kind: frozenset(fields) | frozenset(_COMMON_RECORD_FIELDS)
    for kind, fields in _RECORD_FIELDS.items()
}


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
    if type(obj) is not dict and not isinstance(obj, Mapping):
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
    allowed = _ALLOWED_FIELDS[kind]
    unknown = [] if allowed.issuperset(obj) else sorted(obj.keys() - allowed)
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
    if value is None or type(value) is dict or isinstance(value, Mapping):
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
