"""From stored hits to visits: a simple version of Matomo's visit model.

A hit joins the visitor's visit when that visit's last action is less than 30 minutes old, as
Matomo's tracker decides (trust_visitors_cookies=0): a `cid` (forced visitor id) matches only
that visitor id; a `uid` matches only its user; a valid `_id` matches that visitor id OR the
browser's configuration (IP + User-Agent); no id at all matches the configuration. So hits
without `cid` from one IP and browser share a visit even with different `_id`. A visit never
crosses midnight in the site's time zone (create_new_visit_after_midnight).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

from tests.fakematomo.state import HitMeta, ServerState

VISIT_LENGTH = 1800
ACTION_KINDS = ("pageview", "event", "download", "outlink", "search")
# Requests that record a log_link_visit_action row (a goal or ecommerce request records only a
# conversion, a ping only updates the visit): what action-scope dimensions are stored with.
RECORDS_ACTION = frozenset((*ACTION_KINDS, "content"))
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")

REFERRER_TYPES = {
    "direct": (1, "Direct Entry"),
    "search": (2, "Search Engines"),
    "website": (3, "Websites"),
    "campaign": (6, "Campaigns"),
    "social": (7, "Social Networks"),
}
_SEARCH_ENGINES = {
    "google.": ("Google", "google.com"),
    "bing.": ("Bing", "bing.com"),
    "duckduckgo.": ("DuckDuckGo", "duckduckgo.com"),
    "yahoo.": ("Yahoo!", "yahoo.com"),
    "ecosia.": ("Ecosia", "ecosia.org"),
    "qwant.": ("Qwant", "qwant.com"),
}
_SOCIAL = {
    "facebook.com": "Facebook",
    "twitter.com": "Twitter",
    "t.co": "Twitter",
    "x.com": "Twitter",
    "linkedin.com": "LinkedIn",
    "reddit.com": "Reddit",
    "mastodon.social": "Mastodon",
}
_CAMPAIGN_NAMES = ("pk_campaign", "pk_cpn", "mtm_campaign", "matomo_campaign", "utm_campaign")
_CAMPAIGN_KEYWORDS = ("pk_kwd", "pk_keyword", "mtm_keyword", "mtm_kwd", "utm_term")
COUNTRIES = {
    "xx": "Unknown",
    "us": "United States",
    "de": "Germany",
    "fr": "France",
    "gb": "United Kingdom",
    "ca": "Canada",
    "nl": "Netherlands",
    "es": "Spain",
    "it": "Italy",
    "jp": "Japan",
    "br": "Brazil",
    "in": "India",
    "au": "Australia",
    "ch": "Switzerland",
    "at": "Austria",
}


@dataclass(frozen=True)
class Referrer:
    kind: str  # direct, search, website, campaign, social
    name: str = ""
    keyword: str = ""
    url: str = ""


@dataclass(frozen=True)
class Device:
    type: str
    browser: str
    browser_code: str
    browser_version: str
    os: str
    os_code: str
    os_version: str


@dataclass
class Conversion:
    ts: float
    idgoal: str  # "ecommerceOrder" or a goal id
    revenue: float
    params: dict[str, Any]
    items: list[list[Any]] = field(default_factory=list)


@dataclass
class Visit:
    idvisit: int
    idsite: int
    visitor_id: str
    ip: str
    ua: str
    user_id: str | None
    day: date
    first_ts: float
    last_ts: float
    hits: list[tuple[float, dict[str, Any], str]] = field(default_factory=list)
    conversions: list[Conversion] = field(default_factory=list)
    returning: bool = False
    visit_count: int = 1
    referrer: Referrer = field(default_factory=lambda: Referrer("direct"))
    device: Device | None = None
    country: str = "xx"
    goals_done: set[str] = field(default_factory=set)
    config_id: str = ""
    # Custom dimension id -> the values Matomo stored: one per action (action scope), or the
    # visit's last one (visit scope).
    dims: dict[int, list[str]] = field(default_factory=dict)
    # Parallel to hits: the action-scope values stored with each hit.
    action_dims: list[dict[int, str]] = field(default_factory=list)
    _value_sets: dict[int, frozenset[str]] = field(default_factory=dict, repr=False, compare=False)

    # The cached properties below are read only once a visit is built (its hits are final).
    @cached_property
    def kinds(self) -> Counter[str]:
        """How many hits of each kind (pageview, event, ..., ping) the visit has."""
        return Counter(h[2] for h in self.hits)

    @property
    def actions(self) -> list[tuple[float, dict[str, Any], str]]:
        return [h for h in self.hits if h[2] in ACTION_KINDS]

    @cached_property
    def nb_actions(self) -> int:
        return sum(self.kinds[k] for k in ACTION_KINDS)

    def has_value(self, iddimension: int, value: str) -> bool:
        """Whether custom dimension `iddimension` has `value` stored on this visit."""
        found = self._value_sets.get(iddimension)
        if found is None:
            found = self._value_sets[iddimension] = frozenset(self.dims.get(iddimension, ()))
        return value in found

    @property
    def length(self) -> int:
        return int(self.last_ts - self.first_ts)

    @property
    def converted(self) -> bool:
        return bool(self.conversions)

    @property
    def bounced(self) -> bool:
        return self.nb_actions == 1


def classify(params: dict[str, Any]) -> str:
    if params.get("ping") == "1":
        return "ping"
    idgoal = params.get("idgoal")
    if idgoal:
        if idgoal == "0":
            return "order" if params.get("ec_id") else "cart"
        return "goal"
    # An event needs both category and action; e_c alone is recorded as a pageview.
    if params.get("e_c", "").strip() and params.get("e_a", "").strip():
        return "event"
    if params.get("download"):
        return "download"
    if params.get("link"):
        return "outlink"
    if params.get("search"):
        return "search"
    if params.get("c_n") and not params.get("url") and not params.get("action_name"):
        return "content"
    return "pageview"


def config_of(meta: HitMeta) -> str:
    """Matomo's config_id: a hash of the browser's configuration and the IP."""
    return hashlib.sha1(f"{meta.ua}|{meta.ip}".encode()).hexdigest()[:16]


def visitor_of(params: dict[str, Any], meta: HitMeta) -> tuple[str, str, tuple[str, ...]]:
    """(visitor key, visitor id, the keys of open visits the hit may join, best first).

    The visitor key counts a visitor's visits (visitCount, returning visitors).
    """
    config = config_of(meta)
    cid = params.get("cid")
    if cid:
        return "cid:" + cid.lower(), cid.lower(), ("vid:" + cid.lower(),)
    uid = params.get("uid")
    if uid:
        vid = hashlib.sha1(uid.encode()).hexdigest()[:16]
        return "uid:" + vid, vid, ("uid:" + vid,)
    raw_id = params.get("_id", "")
    if _HEX16.fullmatch(raw_id[:16]) and len(raw_id) >= 16:
        vid = raw_id[:16].lower()
        return "cfg:" + config, vid, ("vid:" + vid, "cfg:" + config)
    return "cfg:" + config, config, ("cfg:" + config,)


def visit_keys(idsite: int, params: dict[str, Any], meta: HitMeta) -> tuple[Hashable, ...]:
    """The visits a stored hit may update, as lock keys: the open visits it may join.

    The same candidates as visitor_of, without hashing: a `cid` hit updates only that
    visitor's visit; a `uid` hit its user's; a hit with a valid `_id` its visitor's OR its
    configuration's (IP + User-Agent), so it takes both; a hit without any id its
    configuration's. Not modelled: a hit without `cid` joining a `cid` visit of the same
    configuration (hits of one visit should not mix the two anyway).
    """
    cid = params.get("cid")
    if cid:
        return ((idsite, "vid", cid.lower()),)
    uid = params.get("uid")
    if uid:
        return ((idsite, "uid", uid),)
    config = (idsite, "cfg", meta.ip, meta.ua)
    raw_id = params.get("_id", "")
    if len(raw_id) >= 16 and _HEX16.fullmatch(raw_id[:16]):
        return ((idsite, "vid", raw_id[:16].lower()), config)
    return (config,)


def sender_identity(params: dict[str, Any], meta: HitMeta) -> str:
    """Who sent a hit, the way a client groups hits into lanes: "cid:..." (forced visitor id),
    else "_id:..." (visitor id cookie), else "uid:..." (user id), else "ip+ua:IP UA"."""
    cid = str(params.get("cid") or "")
    if cid:
        return "cid:" + cid.lower()
    raw_id = str(params.get("_id") or "")
    if raw_id:
        return "_id:" + raw_id[:16].lower()
    uid = str(params.get("uid") or "")
    if uid:
        return "uid:" + uid
    return f"ip+ua:{meta.ip} {meta.ua}"


def referrer_of(params: dict[str, Any], site_host: str) -> Referrer:
    url = params.get("url", "")
    query = parse_qs(urlparse(url).query) if "?" in url else {}
    for name in _CAMPAIGN_NAMES:
        if query.get(name):
            keyword = next((query[k][0] for k in _CAMPAIGN_KEYWORDS if query.get(k)), "")
            return Referrer("campaign", query[name][0].lower(), keyword.lower(), url)
    ref = params.get("urlref", "")
    if not ref:
        return Referrer("direct")
    parsed = urlparse(ref)
    host = (parsed.hostname or "").lower()
    if not host or host == site_host or host.removeprefix("www.") == site_host:
        return Referrer("direct")
    for needle, (engine, _domain) in _SEARCH_ENGINES.items():
        if needle in host:
            q = parse_qs(parsed.query)
            keyword = (q.get("q") or q.get("p") or q.get("text") or [""])[0]
            return Referrer("search", engine, keyword or "Keyword not defined", ref)
    bare = host.removeprefix("www.")
    if bare in _SOCIAL:
        return Referrer("social", _SOCIAL[bare], "", ref)
    return Referrer("website", bare, parsed.path.lstrip("/"), ref)


def device_of(ua: str) -> Device:
    dtype = "Unknown"
    if re.search(r"iPhone|Android.*Mobile|Mobile Safari|Windows Phone", ua):
        dtype = "Smartphone"
    elif re.search(r"iPad|Tablet|Android", ua):
        dtype = "Tablet"
    elif re.search(r"Windows NT|Macintosh|X11|Linux|CrOS", ua):
        dtype = "Desktop"
    browser, code, version = "Unknown", "UNK", ""
    for pattern, name, bcode in (
        (r"Edg/([\d.]+)", "Microsoft Edge", "PS"),
        (r"OPR/([\d.]+)", "Opera", "OP"),
        (r"Firefox/([\d.]+)", "Firefox", "FF"),
        (r"Chrome/([\d.]+)", "Chrome", "CH"),
        (r"Version/([\d.]+).*Safari/", "Safari", "SF"),
        (r"curl/([\d.]+)", "curl", "curl"),
        (r"python-requests/([\d.]+)", "Python Requests", "Python Requests"),
    ):
        m = re.search(pattern, ua)
        if m:
            browser, code = name, bcode
            version = ".".join(m[1].split(".")[:2])
            break
    os_name, os_code, os_version = "Unknown", "UNK", ""
    if m := re.search(r"Windows NT ([\d.]+)", ua):
        os_name, os_code = "Windows", "WIN"
        os_version = {"10.0": "10", "6.3": "8.1", "6.2": "8", "6.1": "7"}.get(m[1], m[1])
    elif m := re.search(r"(?:iPhone|CPU) OS ([\d_]+)", ua):
        os_name, os_code, os_version = "iOS", "IOS", m[1].replace("_", ".")
    elif m := re.search(r"Mac OS X ([\d_]+)", ua):
        os_name, os_code, os_version = "Mac", "MAC", ".".join(m[1].split("_")[:2])
    elif m := re.search(r"Android ([\d.]+)", ua):
        os_name, os_code, os_version = "Android", "AND", m[1]
    elif re.search(r"Linux|X11", ua):
        os_name, os_code = "GNU/Linux", "LIN"
    return Device(dtype, browser, code, version, os_name, os_code, os_version)


def _conversion(ts: float, params: dict[str, Any], kind: str) -> Conversion:
    def money(name: str) -> float:
        try:
            return float(params.get(name) or 0)
        except ValueError:
            return 0.0

    if kind == "order":
        try:
            items = json.loads(params.get("ec_items") or "[]")
        except ValueError:
            items = []
        items = [i for i in items if isinstance(i, list) and i]
        return Conversion(ts, "ecommerceOrder", money("revenue"), params, items)
    return Conversion(ts, str(params.get("idgoal")), money("revenue"), params)


class VisitCache:
    """Visits computed from the visible hits, recomputed only when those changed.

    Also indexes visits by custom dimension value, so a Live lookup by key does not scan.
    """

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._lock = threading.Lock()
        self._key: tuple[int, int] = (-1, -1)
        self._visits: dict[int, list[Visit]] = {}
        self._index: dict[tuple[int, int, str], list[Visit]] | None = None

    def visits(self) -> dict[int, list[Visit]]:
        with self._lock:
            return self._current()

    def _current(self) -> dict[int, list[Visit]]:
        count = self._state.visible_count()
        if (self._state.generation, count) != self._key:
            generation, hits, meta = self._state.snapshot(count)
            self._visits = build_visits(self._state, hits, meta)
            self._index = None
            self._key = (generation, count)
        return self._visits

    def with_value(self, idsite: int, iddimension: int, value: str) -> list[Visit]:
        """The site's visits where custom dimension `iddimension` has `value` stored."""
        with self._lock:
            visits = self._current()
            if self._index is None:
                self._index = _index(visits)
            return self._index.get((idsite, iddimension, value), [])


def _index(visits: dict[int, list[Visit]]) -> dict[tuple[int, int, str], list[Visit]]:
    index: dict[tuple[int, int, str], list[Visit]] = {}
    for idsite, site_visits in visits.items():
        for visit in site_visits:
            for iddim, values in visit.dims.items():
                for value in set(values):
                    index.setdefault((idsite, iddim, value), []).append(visit)
    return index


def build_visits(
    state: ServerState, hits: list[dict[str, Any]], meta: list[HitMeta]
) -> dict[int, list[Visit]]:
    order = sorted(range(len(hits)), key=lambda i: (meta[i].ts, i))
    by_site: dict[int, list[Visit]] = {}
    # (idsite, "vid:..."/"cfg:..."/"uid:...") -> that visitor's or configuration's last visit
    open_visits: dict[tuple[int, str], Visit] = {}
    visit_counts: dict[tuple[int, str], int] = {}
    orders_seen: set[tuple[int, str]] = set()
    zones: dict[int, ZoneInfo] = {}
    everything: list[Visit] = []
    for i in order:
        params, m = hits[i], meta[i]
        idsite = int(params.get("idsite", 0))
        site = state.sites.get(idsite)
        if site is None:
            continue
        zone = zones.get(idsite) or zones.setdefault(idsite, ZoneInfo(site.timezone))
        day = datetime.fromtimestamp(m.ts, zone).date()
        key, vid, candidates = visitor_of(params, m)
        kind = classify(params)
        visit = _open_visit(open_visits, idsite, candidates)
        if (
            visit is None
            or m.ts - visit.last_ts > VISIT_LENGTH
            or day != visit.day
            or (params.get("new_visit") == "1" and kind != "ping")
        ):
            if kind == "ping":
                continue  # a heartbeat never creates a visit
            count = visit_counts.get((idsite, key), 0) + 1
            visit_counts[(idsite, key)] = count
            visit = Visit(0, idsite, vid, m.ip, m.ua, params.get("uid") or None, day, m.ts, m.ts)
            visit.config_id = config_of(m)
            visit.returning = count > 1
            visit.visit_count = count
            host = (urlparse(site.main_url).hostname or "").removeprefix("www.")
            visit.referrer = referrer_of(params, host)
            visit.device = device_of(m.ua)
            visit.country = (params.get("country") or "xx").lower()
            by_site.setdefault(idsite, []).append(visit)
            everything.append(visit)
        _register(open_visits, idsite, key, visit)
        visit.last_ts = max(visit.last_ts, m.ts)
        if params.get("uid"):
            visit.user_id = params["uid"]
        visit.hits.append((m.ts, params, kind))
        visit.action_dims.append(m.action_dims)
        for iddim, value in m.action_dims.items():
            visit.dims.setdefault(iddim, []).append(value)
        for iddim, value in m.visit_dims.items():
            visit.dims[iddim] = [value]  # the last value sent wins
        if kind == "order":
            order_key = (idsite, str(params.get("ec_id")))
            if order_key in orders_seen:
                continue  # Matomo ignores a repeated order id
            orders_seen.add(order_key)
            visit.conversions.append(_conversion(m.ts, params, kind))
        elif kind == "goal" and str(params.get("idgoal")) not in visit.goals_done:
            # By default a goal converts at most once per visit.
            visit.goals_done.add(str(params.get("idgoal")))
            visit.conversions.append(_conversion(m.ts, params, kind))
    for n, visit in enumerate(everything, start=1):
        visit.idvisit = n
    return by_site


def _open_visit(
    open_visits: dict[tuple[int, str], Visit], idsite: int, candidates: tuple[str, ...]
) -> Visit | None:
    """The most recently active visit among those the hit may join (Matomo orders by
    visit_last_action_time)."""
    found = [v for c in candidates if (v := open_visits.get((idsite, c))) is not None]
    return max(found, key=lambda v: v.last_ts, default=None)


def _register(
    open_visits: dict[tuple[int, str], Visit], idsite: int, key: str, visit: Visit
) -> None:
    open_visits[(idsite, "vid:" + visit.visitor_id)] = visit
    open_visits[(idsite, "cfg:" + visit.config_id)] = visit
    if key.startswith("uid:"):
        open_visits[(idsite, key)] = visit
