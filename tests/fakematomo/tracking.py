"""matomo.php: single hits and bulk tracking, with Matomo's validation rules and quirks.

This path carries benchmark load (10-20k hits/s in bulks of 100), so it only parses, checks
and appends; reports are computed elsewhere, on demand.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode

from tests.fakematomo import dimensions
from tests.fakematomo.access import Access
from tests.fakematomo.capacity import Rollback
from tests.fakematomo.faults import Effects
from tests.fakematomo.replies import GIF, TRACKER_TEXT, Reply, json_reply
from tests.fakematomo.state import HitMeta, ServerState
from tests.fakematomo.visits import RECORDS_ACTION, classify, visit_keys

# Older than this a custom timestamp needs a write/admin/superuser token
# (tracking_requests_require_authentication_when_custom_timestamp_newer_than).
OLD_HIT_SECONDS = 86400
# Matomo ignores timestamps older than 20 years and uses "now" instead.
MAX_AGE_SECONDS = 20 * 365 * 86400
PRIVILEGED = ("cip", "country", "region", "city", "lat", "long")

_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
# DeviceDetector's generic bot detection plus the named crawlers one meets in practice.
_BOT = re.compile(
    r"bot\b|bot[/;_-]|crawl|spider|slurp|archiver|monitor|checker|uptime|fetcher|probe|"
    r"scanner|scraper|facebookexternalhit|lighthouse|pingdom",
    re.IGNORECASE,
)

STORED, EXCLUDED, INVALID = "stored", "excluded", "invalid"


@lru_cache(maxsize=4096)
def is_bot(ua: str) -> bool:
    return bool(_BOT.search(ua))


def parse_cdt(value: str) -> float | None:
    """Unix seconds or a datetime string in UTC (what strtotime would accept, roughly)."""
    value = value.strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    text = value.replace("T", " ").removesuffix("Z").removesuffix("+00:00").strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


def hit_time(params: dict[str, str], now: float) -> float:
    """The hit's time: a future, garbage or ancient cdt silently becomes "now"."""
    ts = now
    cdt = params.get("cdt")
    if cdt:
        parsed = parse_cdt(cdt)
        if parsed is not None and now - MAX_AGE_SECONDS < parsed <= now:
            ts = parsed
    cdo = params.get("cdo")
    if cdo:
        with contextlib.suppress(ValueError):
            ts -= abs(float(cdo))
    return ts


@dataclass
class TrackContext:
    """Who sent the hits: client IP, User-Agent header, token and how it travelled."""

    state: ServerState
    ip: str
    ua_header: str
    token: str | None
    token_in_url: bool
    now: float
    _access: Access | None = field(default=None, init=False)
    _checked: bool = field(default=False, init=False)

    def access(self) -> Access | None:
        """The token's access, or None (no token, unknown token, or refused as insecure)."""
        if not self._checked:
            self._checked = True
            acc = self.state.tokens.get(self.token or "")
            if acc is not None and acc.secure_only and self.token_in_url:
                acc = None
            self._access = acc
        return self._access

    def authorized(self, idsite: int) -> bool:
        """Authenticate lazily, only when a hit needs it, like Matomo's tracker does."""
        if self.state.is_blocked(self.ip):
            return False
        acc = self.access()
        if acc is None:
            if self.token and self.token != "anonymous":
                self.state.record_failed_login(self.ip)
            return False
        return acc.can_track_privileged(idsite)

    @property
    def superuser(self) -> bool:
        acc = self.access()
        return acc is not None and acc.superuser


def evaluate(params: dict[str, str], ctx: TrackContext) -> tuple[str, HitMeta | None]:
    """Decide what Matomo would do with one hit: store it, accept-but-drop it, or reject it."""
    idsite_raw = params.get("idsite", "")
    idsite = int(idsite_raw) if idsite_raw.isdigit() else 0
    if idsite not in ctx.state.sites:
        if idsite > 0:
            _failure(ctx, idsite, 1, params)
        return INVALID, None
    if params.get("rec", "").strip() != "1":
        return EXCLUDED, None
    ts = hit_time(params, ctx.now) if ("cdt" in params or "cdo" in params) else ctx.now
    needs_auth = ctx.now - ts >= OLD_HIT_SECONDS or any(params.get(p) for p in PRIVILEGED)
    if needs_auth and not ctx.authorized(idsite):
        _failure(ctx, idsite, 2, params)
        return INVALID, None
    cid = params.get("cid")
    if cid and not _HEX16.fullmatch(cid):
        return INVALID, None
    idgoal = params.get("idgoal")
    if idgoal and idgoal != "0":
        site = ctx.state.sites[idsite]
        if not idgoal.isdigit() or int(idgoal) not in site.goals:
            return INVALID, None
    ua = params.get("ua") or ctx.ua_header
    if params.get("bots") != "1" and ua and is_bot(ua):
        return EXCLUDED, None
    ip = params.get("cip") or ctx.ip
    if ctx.state.tracked_dimensions.get(idsite):
        action, visit = dimensions.tracked_values(
            ctx.state, idsite, params, classify(params) in RECORDS_ACTION
        )
        return STORED, HitMeta(ts, ip, ua, action, visit)
    return STORED, HitMeta(ts, ip, ua)


def _failure(ctx: TrackContext, idsite: int, idfailure: int, params: dict[str, str]) -> None:
    ctx.state.add_tracking_failure(idsite, idfailure, "?" + urlencode(params))


def commit(
    batch: list[tuple[dict[str, Any], HitMeta]], hits: int, state: ServerState, effects: Effects
) -> bool:
    """Store a batch as one transaction (its visits locked, `hits` hits' cost spent).

    False when it was rolled back (a deadlock, injected or on contention): nothing stored.
    """
    keys = {
        key for params, meta in batch for key in visit_keys(int(params["idsite"]), params, meta)
    }
    try:
        with state.capacity.transaction(keys, hits, deadlock=effects.deadlock, holds=effects.holds):
            state.store(batch)
    except Rollback:
        return False
    return True


def _clean(params: dict[str, str]) -> dict[str, Any]:
    # Matomo never stores the token; neither do we, so dumps of hits cannot leak it.
    params.pop("token_auth", None)
    return params


# --- single hits ------------------------------------------------------------------------------


def single_reply(status: int, send_image: bool, method: str) -> Reply:
    headers: dict[str, str] = {}
    if method == "GET":
        headers["Cache-Control"] = "no-store"
    else:
        headers["Access-Control-Allow-Origin"] = "*"
        headers["Access-Control-Allow-Credentials"] = "true"
    if status == 400:
        # Matomo prints the GIF first (unless send_image=0) and then its text.
        body = (GIF if send_image else b"") + TRACKER_TEXT.encode()
        return Reply(400, body, "image/gif" if send_image else "text/html; charset=utf-8", headers)
    if not send_image:
        return Reply(204 if status == 200 else status, b"", None, headers)
    return Reply(status, GIF, "image/gif", headers)


def handle_single(
    params: dict[str, str], ctx: TrackContext, effects: Effects, method: str
) -> Reply:
    send_image = params.get("send_image") != "0"
    if effects.maintenance:
        # record_statistics=0: the tracker answers 503 with its image and stores nothing.
        return single_reply(503, send_image, method)
    if effects.database_down:
        # An exception inside the tracker ends as 400: a 400 does not prove the hit was bad.
        return single_reply(400, send_image, method)
    outcome, meta = evaluate(params, ctx)
    if outcome == INVALID:
        return single_reply(400, send_image, method)
    batch = [(_clean(params), meta)] if outcome == STORED and meta is not None else []
    if not commit(batch, 1, ctx.state, effects):
        # A rolled-back transaction is an exception inside the tracker: 400, as above.
        return single_reply(400, send_image, method)
    return single_reply(200, send_image, method)


# --- bulk -------------------------------------------------------------------------------------


def _php_str(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else ""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def bulk_items(raw: list[Any]) -> list[dict[str, str]]:
    """Strings need a '?' (only the query part counts); others are dropped before numbering."""
    items: list[dict[str, str]] = []
    for item in raw:
        if isinstance(item, str):
            q = item.find("?")
            if q < 0:
                continue
            query = item[q + 1 :]
            h = query.find("#")
            if h >= 0:
                query = query[:h]
            items.append(dict(parse_qsl(query, keep_blank_values=True)))
        elif isinstance(item, dict):
            items.append({str(k): _php_str(v) for k, v in item.items()})
    return items


def _bulk_error(status: int, tracked: int = 0, invalid: int = 0) -> Reply:
    return json_reply(status, {"status": "error", "tracked": tracked, "invalid": invalid})


def handle_bulk(
    body: bytes,
    query: dict[str, str],
    bearer: str | None,
    ctx: TrackContext,
    effects: Effects,
) -> Reply:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        return Reply(400, TRACKER_TEXT.encode(), "text/html; charset=utf-8")
    raw = data.get("requests")
    items = bulk_items(raw if isinstance(raw, list) else [])
    token = data.get("token_auth") if isinstance(data.get("token_auth"), str) else None
    ctx.token = token or bearer
    ctx.token_in_url = False
    send_image = _php_str(data.get("send_image", "1")) != "0"
    state = ctx.state
    if effects.maintenance:
        # The bulk handler does not check record_statistics: success with nothing tracked.
        return json_reply(200, {"status": "success", "tracked": 0, "invalid": 0})
    if state.bulk_requests_require_authentication:
        refused = _require_auth(items, ctx)
        if refused is not None:
            return refused
    if effects.database_down:
        # The whole batch runs in one transaction, rolled back on the exception.
        return _bulk_error(500)
    if effects.lose_items:
        # A lock-wait timeout skips items silently: counted neither tracked nor invalid.
        items = items[: max(0, len(items) - effects.lose_items)]
    tracked = 0
    invalid: list[int] = []
    batch: list[tuple[dict[str, Any], HitMeta]] = []
    for index, params in enumerate(items):
        outcome, meta = evaluate(params, ctx)
        if outcome == INVALID:
            invalid.append(index)
            continue
        tracked += 1
        if outcome == STORED and meta is not None:
            batch.append((_clean(params), meta))
    if invalid and state.bulk_requests_require_authentication:
        return _bulk_error(400)
    if not commit(batch, tracked, state, effects):
        # MariaDB error 1213: the whole batch is rolled back.
        return _bulk_error(500)
    if state.queued_tracking and query.get("queuedtracking") != "0":
        # QueuedTracking answers like a single hit and hides the counts.
        return Reply(200, GIF, "image/gif") if send_image else Reply(204)
    if not send_image:
        return Reply(204)
    answer: dict[str, Any] = {"status": "success", "tracked": tracked, "invalid": len(invalid)}
    if ctx.superuser:
        answer["invalid_indices"] = invalid
    return json_reply(200, answer)


def _require_auth(items: list[dict[str, str]], ctx: TrackContext) -> Reply | None:
    """bulk_requests_require_authentication=1: every item's site needs write/admin access."""
    if ctx.state.is_blocked(ctx.ip):
        return _bulk_error(500)
    acc = ctx.access()
    if acc is None:
        if ctx.token and ctx.token != "anonymous":
            ctx.state.record_failed_login(ctx.ip)
        return _bulk_error(500)
    for params in items:
        raw = params.get("idsite", "")
        if raw.isdigit() and not acc.can_track_privileged(int(raw)):
            return _bulk_error(500)
    return None


def form_pairs(body: bytes, content_type: str) -> list[tuple[str, str]]:
    """A form-encoded POST body (what PHP puts in $_POST); anything else counts as no form."""
    if not body or body.lstrip()[:1] in (b"{", b"["):
        return []
    if content_type and "application/x-www-form-urlencoded" not in content_type.lower():
        return []
    return parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
