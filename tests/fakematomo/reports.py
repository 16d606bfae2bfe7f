"""Report rows computed from visits, with Matomo's column names, order and type quirks.

Builders return either one object (VisitsSummary.get, Goals.get) or a list of rows. Rows may
carry private keys the table post-processing understands: "_sub" (child rows), "_flat_label"
and "_flat_extra" (label and extra columns when flat=1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlparse

from tests.fakematomo.access import Site
from tests.fakematomo.visits import COUNTRIES, REFERRER_TYPES, Visit

Row = dict[str, Any]


@dataclass(frozen=True)
class ReportContext:
    site: Site
    period: str
    raw_metrics: bool = False  # format_metrics=0: rates as fractions, not "84%"
    id_goal: str | None = None

    @property
    def uniq(self) -> bool:
        # Unique visitors are archived for day/week/month only (Matomo's defaults).
        return self.period in ("day", "week", "month")


def num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else round(x, 2)


def rate(n: float, d: float, ctx: ReportContext, decimals: int = 0) -> str | float:
    value = n / d if d else 0.0
    if ctx.raw_metrics:
        return round(value, 4)
    text = f"{round(value * 100, decimals):.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text + "%"


# Matomo strips campaign and session parameters (and the fragment) from recorded page URLs.
_STRIPPED_PREFIXES = ("utm_", "mtm_", "pk_", "matomo_", "piwik_")
_STRIPPED = {"gclid", "fbclid", "msclkid", "_ga", "phpsessid", "sessionid", "jsessionid", "sid"}


def clean_url(url: str) -> str:
    parsed = urlparse(url)
    kept = [
        (k, v)
        for k, v in parse_qsl(parsed.query, keep_blank_values=True)
        if not k.lower().startswith(_STRIPPED_PREFIXES) and k.lower() not in _STRIPPED
    ]
    return parsed._replace(query=urlencode(kept), fragment="").geturl()


def dd(value: str) -> str:
    """Matomo double-encodes segment values inside the `segment` column."""
    return quote(quote(value, safe=""), safe="")


# --- visit-based aggregates --------------------------------------------------------------------


class VisitAgg:
    def __init__(self) -> None:
        self.visits = 0
        self.visitors: set[str] = set()
        self.users: set[str] = set()
        self.actions = 0
        self.max_actions = 0
        self.length = 0
        self.bounces = 0
        self.converted = 0
        self.goals: dict[str, dict[str, Any]] = {}

    def add(self, v: Visit) -> None:
        self.visits += 1
        self.visitors.add(v.visitor_id)
        if v.user_id:
            self.users.add(v.user_id)
        n = v.nb_actions
        self.actions += n
        self.max_actions = max(self.max_actions, n)
        self.length += v.length
        self.bounces += v.bounced
        self.converted += v.converted
        seen: set[str] = set()
        for c in v.conversions:
            key = "idgoal=" + c.idgoal
            g = self.goals.setdefault(key, _goal_stats(c.idgoal))
            g["nb_conversions"] += 1
            g["revenue"] += c.revenue
            if key not in seen:
                g["nb_visits_converted"] += 1
                seen.add(key)
            if c.idgoal == "ecommerceOrder":
                for name, param in (
                    ("revenue_subtotal", "ec_st"),
                    ("revenue_tax", "ec_tx"),
                    ("revenue_shipping", "ec_sh"),
                    ("revenue_discount", "ec_dt"),
                ):
                    g[name] += _float(c.params.get(param))
                g["items"] += sum(int(_float(i[4] if len(i) > 4 else 1)) for i in c.items)


def _goal_stats(idgoal: str) -> dict[str, Any]:
    stats: dict[str, Any] = {"nb_conversions": 0, "nb_visits_converted": 0, "revenue": 0.0}
    if idgoal == "ecommerceOrder":
        stats.update(
            revenue_subtotal=0.0,
            revenue_tax=0.0,
            revenue_shipping=0.0,
            revenue_discount=0.0,
            items=0,
        )
    return stats


def _float(value: Any) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def visit_columns(agg: VisitAgg, ctx: ReportContext, strings: bool = False) -> Row:
    row: Row = {}
    if ctx.uniq:
        row["nb_uniq_visitors"] = len(agg.visitors)
    row.update(
        nb_visits=agg.visits,
        nb_actions=agg.actions,
        nb_users=len(agg.users),
        max_actions=agg.max_actions,
        sum_visit_length=agg.length,
        bounce_count=agg.bounces,
        nb_visits_converted=agg.converted,
    )
    if strings:
        # Observed: these come back as strings in country and device reports.
        for key in ("nb_actions", "sum_visit_length", "bounce_count", "nb_visits_converted"):
            row[key] = str(row[key])
    if agg.goals:
        row["goals"] = {
            k: {name: num(v) if isinstance(v, float) else v for name, v in g.items()}
            for k, g in sorted(agg.goals.items())
        }
        row["nb_conversions"] = sum(g["nb_conversions"] for g in agg.goals.values())
        row["revenue"] = num(sum(g["revenue"] for g in agg.goals.values()))
    return row


def _group(visits: Iterable[Visit], key: Callable[[Visit], Any]) -> dict[Any, VisitAgg]:
    groups: dict[Any, VisitAgg] = {}
    for v in visits:
        groups.setdefault(key(v), VisitAgg()).add(v)
    return groups


# --- VisitsSummary.get, Goals.get ------------------------------------------------------------


def visits_summary(visits: list[Visit], ctx: ReportContext) -> Row:
    agg = VisitAgg()
    for v in visits:
        agg.add(v)
    row: Row = {}
    if ctx.uniq:
        row["nb_uniq_visitors"] = len(agg.visitors)
    row.update(
        nb_users=len(agg.users),
        nb_visits=agg.visits,
        nb_actions=agg.actions,
        nb_visits_converted=agg.converted,
        bounce_count=agg.bounces,
        sum_visit_length=agg.length,
        max_actions=agg.max_actions,
        bounce_rate=rate(agg.bounces, agg.visits, ctx),
        nb_actions_per_visit=num(round(agg.actions / agg.visits, 1)) if agg.visits else 0,
        avg_time_on_site=round(agg.length / agg.visits) if agg.visits else 0,
    )
    return row


def goals_get(visits: list[Visit], ctx: ReportContext) -> Row:
    def wanted(idgoal: str) -> bool:
        if not ctx.id_goal:
            return True
        return idgoal == ctx.id_goal or (ctx.id_goal == "ecommerceOrder" and idgoal == "0")

    row: Row = {}
    for suffix, keep in (("", None), ("_new_visit", False), ("_returning_visit", True)):
        chosen = [v for v in visits if keep is None or v.returning == keep]
        convs = [c for v in chosen for c in v.conversions if wanted(c.idgoal)]
        converted = sum(1 for v in chosen if any(wanted(c.idgoal) for c in v.conversions))
        row["nb_conversions" + suffix] = len(convs)
        row["nb_visits_converted" + suffix] = converted
        row["revenue" + suffix] = num(sum(c.revenue for c in convs))
        row["conversion_rate" + suffix] = rate(converted, len(chosen), ctx, 2)
    order = [
        "nb_conversions",
        "nb_visits_converted",
        "revenue",
        "conversion_rate",
    ]
    ordered = {k: row[k] for k in order}
    ordered.update({k: v for k, v in row.items() if k not in ordered})
    return ordered


# --- Actions ----------------------------------------------------------------------------------


class PageAgg:
    def __init__(self) -> None:
        self.hits = 0
        self.visits: set[int] = set()
        self.visitors: set[str] = set()
        self.time = 0
        self.entry_visits = 0
        self.entry_visitors: set[str] = set()
        self.entry_actions = 0
        self.entry_length = 0
        self.entry_bounces = 0
        self.exit_visits = 0
        self.exit_visitors: set[str] = set()

    def add(self, v: Visit, entry: bool, exit_: bool, spent: int) -> None:
        self.hits += 1
        self.visits.add(v.idvisit)
        self.visitors.add(v.visitor_id)
        self.time += spent
        if entry:
            self.entry_visits += 1
            self.entry_visitors.add(v.visitor_id)
            self.entry_actions += v.nb_actions
            self.entry_length += v.length
            self.entry_bounces += v.bounced
        if exit_:
            self.exit_visits += 1
            self.exit_visitors.add(v.visitor_id)


def _pageviews(visits: Iterable[Visit]) -> Iterator[tuple[Visit, dict[str, Any], bool, bool, int]]:
    for v in visits:
        views = [(ts, p) for ts, p, kind in v.hits if kind == "pageview"]
        for i, (ts, params) in enumerate(views):
            spent = int(views[i + 1][0] - ts) if i + 1 < len(views) else 0
            yield v, params, i == 0, i == len(views) - 1, spent


def page_columns(agg: PageAgg, ctx: ReportContext) -> Row:
    row: Row = {"nb_visits": len(agg.visits)}
    if ctx.uniq:
        row["nb_uniq_visitors"] = len(agg.visitors)
    row.update(nb_hits=agg.hits, sum_time_spent=agg.time)
    # Matomo leaves out entry/exit columns of rows that never were an entry/exit page,
    # and sends the ones it has as strings.
    if agg.entry_visits:
        if ctx.uniq:
            row["entry_nb_uniq_visitors"] = len(agg.entry_visitors)
        row.update(
            entry_nb_visits=str(agg.entry_visits),
            entry_nb_actions=str(agg.entry_actions),
            entry_sum_visit_length=str(agg.entry_length),
            entry_bounce_count=str(agg.entry_bounces),
        )
    if agg.exit_visits:
        if ctx.uniq:
            row["exit_nb_uniq_visitors"] = len(agg.exit_visitors)
        row["exit_nb_visits"] = str(agg.exit_visits)
    row.update(
        avg_page_load_time=0,
        avg_time_on_page=round(agg.time / agg.hits) if agg.hits else 0,
        bounce_rate=rate(agg.entry_bounces, agg.entry_visits, ctx),
        exit_rate=rate(agg.exit_visits, len(agg.visits), ctx),
    )
    return row


@dataclass
class Node:
    label: str
    agg: Any
    flat_label: str = ""
    extra: Row = field(default_factory=dict)
    flat_extra: Row = field(default_factory=dict)
    children: dict[str, Node] = field(default_factory=dict)

    def child(self, label: str, factory: Callable[[], Any]) -> Node:
        node = self.children.get(label)
        if node is None:
            node = self.children[label] = Node(label, factory())
        return node


def _rows(
    nodes: Iterable[Node], columns: Callable[[Any], Row], sort_key: str = "nb_visits"
) -> list[Row]:
    rows = []
    for node in nodes:
        row: Row = {"label": node.label, **columns(node.agg), **node.extra}
        if node.children:
            row["_sub"] = _rows(node.children.values(), columns, sort_key)
        row["_flat_label"] = node.flat_label or node.label
        row["_flat_extra"] = node.flat_extra
        rows.append(row)
    rows.sort(key=lambda r: (-float(r.get(sort_key) or 0), str(r["label"])))
    return rows


def pages(visits: list[Visit], ctx: ReportContext, mode: str) -> list[Row]:
    """Actions.getPageUrls / getEntryPageUrls / getExitPageUrls / getPageTitles."""
    root = Node("", None)
    dimension = {
        "url": "Actions_PageUrl",
        "entry": "Actions_EntryPageUrl",
        "exit": "Actions_ExitPageUrl",
        "title": "Actions_PageTitle",
    }[mode]
    segment_name = {
        "url": "pageUrl",
        "entry": "entryPageUrl",
        "exit": "exitPageUrl",
        "title": "pageTitle",
    }[mode]
    for v, params, entry, exit_, spent in _pageviews(visits):
        if (mode == "entry" and not entry) or (mode == "exit" and not exit_):
            continue
        if mode == "title":
            title = params.get("action_name") or "Page Name not defined"
            leaf = root.child(title, PageAgg)
            leaf.flat_extra = {dimension: title}
            leaf.extra = {"segment": f"{segment_name}=={dd(title)}"}
            leaf.agg.add(v, entry, exit_, spent)
            continue
        url = clean_url(params.get("url", ""))
        parsed = urlparse(url)
        path = parsed.path or "/"
        if parsed.query:
            path += "?" + parsed.query
        parts = [p for p in parsed.path.split("/") if p]
        node = root
        for folder in parts[:-1]:
            node = node.child(folder, PageAgg)
            node.agg.add(v, entry, exit_, spent)
        leaf_label = "/" + parts[-1] if parts else "/"
        if parts and parsed.query:
            leaf_label += "?" + parsed.query
        node = node.child(leaf_label, PageAgg)
        node.agg.add(v, entry, exit_, spent)
        node.flat_label = path
        node.extra = {"url": url, "segment": f"{segment_name}=={dd(url)}"}
        node.flat_extra = {dimension: path}
    rows = _rows(root.children.values(), lambda a: page_columns(a, ctx))
    return rows


# --- Events -----------------------------------------------------------------------------------


class EventAgg:
    def __init__(self) -> None:
        self.visits: set[int] = set()
        self.visitors: set[str] = set()
        self.events = 0
        self.values: list[float] = []

    def add(self, v: Visit, value: float | None) -> None:
        self.visits.add(v.idvisit)
        self.visitors.add(v.visitor_id)
        self.events += 1
        if value is not None:
            self.values.append(value)


def event_columns(agg: EventAgg, ctx: ReportContext) -> Row:
    row: Row = {}
    if ctx.uniq:
        row["nb_uniq_visitors"] = len(agg.visitors)
    counts = {
        "nb_visits": len(agg.visits),
        "nb_events": agg.events,
        "nb_events_with_value": len(agg.values),
    }
    # Observed mix: some rows carry these counts as strings, others as numbers.
    stringly = counts["nb_visits"] % 2 == 1
    row.update({k: str(n) if stringly else n for k, n in counts.items()})
    total = sum(agg.values)
    row.update(
        sum_event_value=num(total),
        min_event_value=num(min(agg.values)) if agg.values else None,
        max_event_value=num(max(agg.values)) if agg.values else None,
        avg_event_value=num(round(total / len(agg.values), 2)) if agg.values else 0,
    )
    return row


_EVENT_DIMS = {
    "category": ("e_c", "Events_EventCategory", "eventCategory", "Event category not defined"),
    "action": ("e_a", "Events_EventAction", "eventAction", "Event action not defined"),
    "name": ("e_n", "Events_EventName", "eventName", "Event name not defined"),
}


def events(visits: list[Visit], ctx: ReportContext, primary: str, secondary: str) -> list[Row]:
    p_param, p_dim, p_segment, p_none = _EVENT_DIMS[primary]
    s_param, s_dim, _s_segment, s_none = _EVENT_DIMS[secondary]
    root = Node("", None)
    for v in visits:
        for _ts, params, kind in v.hits:
            if kind != "event":
                continue
            value: float | None = None
            if params.get("e_v", "") != "":
                try:
                    value = float(params["e_v"])
                except ValueError:
                    value = None
            top_label = params.get(p_param, "").strip() or p_none
            sub_label = params.get(s_param, "").strip() or s_none
            top = root.child(top_label, EventAgg)
            top.extra = {"segment": f"{p_segment}=={dd(top_label)}"}
            top.agg.add(v, value)
            sub = top.child(sub_label, EventAgg)
            sub.agg.add(v, value)
            sub.flat_label = f"{top_label} - {sub_label}"
            sub.flat_extra = {p_dim: top_label, s_dim: sub_label}
    return _rows(root.children.values(), lambda a: event_columns(a, ctx), "nb_events")


# --- Referrers ---------------------------------------------------------------------------------


def referrer_types(visits: list[Visit], ctx: ReportContext) -> list[Row]:
    rows = []
    for kind, agg in _group(visits, lambda v: v.referrer.kind).items():
        code, name = REFERRER_TYPES[kind]
        row: Row = {"label": name, **visit_columns(agg, ctx)}
        row.update(segment=f"referrerType=={kind}", referrer_type=code)
        row["_flat_extra"] = {}
        rows.append(row)
    rows.sort(key=lambda r: (-r["nb_visits"], r["label"]))
    return rows


def _two_level(
    visits: list[Visit],
    ctx: ReportContext,
    kind: str,
    decorate: Callable[[Node, Node, Visit], None],
) -> list[Row]:
    root = Node("", None)
    for v in visits:
        ref = v.referrer
        if ref.kind != kind:
            continue
        top = root.child(ref.name, VisitAgg)
        top.agg.add(v)
        sub = top.child(ref.keyword or "Keyword not defined", VisitAgg)
        sub.agg.add(v)
        decorate(top, sub, v)
    return _rows(root.children.values(), lambda a: visit_columns(a, ctx))


def websites(visits: list[Visit], ctx: ReportContext) -> list[Row]:
    def decorate(top: Node, sub: Node, v: Visit) -> None:
        page = v.referrer.keyword
        sub.label = page or "index"
        sub.flat_label = f"{top.label}/{page}" if page else top.label
        sub.extra = {"url": v.referrer.url}
        sub.flat_extra = {"Referrers_Website": top.label, "Referrers_WebsitePage": page}
        top.extra = {"segment": f"referrerName=={dd(top.label)}"}

    return _two_level(visits, ctx, "website", decorate)


def search_engines(visits: list[Visit], ctx: ReportContext) -> list[Row]:
    def decorate(top: Node, sub: Node, v: Visit) -> None:
        host = urlparse(v.referrer.url).hostname or ""
        domain = host.removeprefix("www.")
        logo = f"plugins/Morpheus/icons/dist/searchEngines/{domain}.png"
        top.extra = {"url": f"http://{domain}", "logo": logo}
        sub.flat_label = f"{top.label} - {sub.label}"
        sub.extra = {"url": v.referrer.url, "logo": logo}
        sub.flat_extra = {"Referrers_SearchEngine": top.label, "Referrers_Keyword": sub.label}

    return _two_level(visits, ctx, "search", decorate)


def campaigns(visits: list[Visit], ctx: ReportContext) -> list[Row]:
    def decorate(top: Node, sub: Node, v: Visit) -> None:
        top.extra = {"segment": f"referrerType==campaign;referrerName=={dd(top.label)}"}
        sub.flat_label = f"{top.label} - {sub.label}"
        # The duplicated referrerType clause is what Matomo really sends.
        sub.extra = {
            "segment": f"referrerType==campaign;referrerName=={dd(top.label)};"
            f"referrerType==campaign;referrerKeyword=={dd(sub.label)}"
        }
        sub.flat_extra = {"Referrers_Campaign": top.label, "Referrers_Keyword": sub.label}

    return _two_level(visits, ctx, "campaign", decorate)


# --- countries and devices ---------------------------------------------------------------------


def _dimension_rows(
    visits: list[Visit],
    ctx: ReportContext,
    key: Callable[[Visit], str],
    describe: Callable[[str], tuple[str, Row, Row]],
) -> list[Row]:
    rows = []
    for value, agg in _group(visits, key).items():
        label, extra, flat_extra = describe(value)
        row: Row = {"label": label, **visit_columns(agg, ctx, strings=True), **extra}
        row["_flat_extra"] = flat_extra
        rows.append(row)
    rows.sort(key=lambda r: (-r["nb_visits"], r["label"]))
    return rows


def countries(visits: list[Visit], ctx: ReportContext) -> list[Row]:
    def describe(code: str) -> tuple[str, Row, Row]:
        name = COUNTRIES.get(code, code.upper())
        extra = {
            "code": code,
            "logo": f"plugins/Morpheus/icons/dist/flags/{code}.png",
            "segment": f"countryCode=={code}",
            "logoHeight": 16,
        }
        return name, extra, {"UserCountry_Country": name}

    return _dimension_rows(visits, ctx, lambda v: v.country, describe)


def device_types(visits: list[Visit], ctx: ReportContext) -> list[Row]:
    def describe(name: str) -> tuple[str, Row, Row]:
        code = name.lower()
        extra = {
            "segment": f"deviceType=={code}",
            "logo": f"plugins/Morpheus/icons/dist/devices/{code}.png",
        }
        return name, extra, {"DevicesDetection_DeviceType": name}

    return _dimension_rows(
        visits, ctx, lambda v: v.device.type if v.device else "Unknown", describe
    )


def browsers(visits: list[Visit], ctx: ReportContext) -> list[Row]:
    codes = {v.device.browser: v.device.browser_code for v in visits if v.device}

    def describe(name: str) -> tuple[str, Row, Row]:
        code = codes.get(name, "UNK")
        extra = {
            "logo": f"plugins/Morpheus/icons/dist/browsers/{code}.png",
            "segment": f"browserCode=={code}",
        }
        return name, extra, {"DevicesDetection_BrowserName": name}

    return _dimension_rows(visits, ctx, lambda v: v.device.browser if v.device else "", describe)


def os_versions(visits: list[Visit], ctx: ReportContext) -> list[Row]:
    info: dict[str, tuple[str, str]] = {}
    for v in visits:
        if v.device:
            d = v.device
            info[_os_label(d.os, d.os_version)] = (d.os_code, d.os_version)

    def describe(label: str) -> tuple[str, Row, Row]:
        code, version = info.get(label, ("UNK", ""))
        extra = {
            "segment": f"operatingSystemCode=={code};operatingSystemVersion=={version}",
            "logo": f"plugins/Morpheus/icons/dist/os/{code}.png",
        }
        return label, extra, {"DevicesDetection_OsVersion": label}

    return _dimension_rows(
        visits,
        ctx,
        lambda v: _os_label(v.device.os, v.device.os_version) if v.device else "Unknown",
        describe,
    )


def _os_label(name: str, version: str) -> str:
    return f"{name} {version}".strip() if version and name != "GNU/Linux" else name


# --- ecommerce items ---------------------------------------------------------------------------


def items_sku(visits: list[Visit], ctx: ReportContext) -> list[Row]:
    stats: dict[str, dict[str, float]] = {}
    viewers: dict[str, set[int]] = {}
    for v in visits:
        for _ts, params, _kind in v.hits:
            if params.get("_pks"):
                viewers.setdefault(params["_pks"], set()).add(v.idvisit)
        for c in v.conversions:
            for item in c.items:
                sku = str(item[0])
                price = _float(item[3]) if len(item) > 3 else 0.0
                qty = _float(item[4]) if len(item) > 4 else 1.0
                s = stats.setdefault(sku, {"revenue": 0.0, "quantity": 0.0, "orders": 0.0})
                s["revenue"] += price * qty
                s["quantity"] += qty
                s["orders"] += 1
    rows = []
    for sku, s in stats.items():
        views = len(viewers.get(sku, ()))
        rows.append(
            {
                "label": sku,
                "revenue": num(s["revenue"]),
                "quantity": num(s["quantity"]),
                "orders": num(s["orders"]),
                "avg_price": num(round(s["revenue"] / s["quantity"], 2)) if s["quantity"] else 0,
                "avg_quantity": num(round(s["quantity"] / s["orders"], 2)) if s["orders"] else 0,
                # Product conversion rate is orders per visit that viewed the product.
                "conversion_rate": rate(s["orders"] if views else 0, views, ctx, 2),
                "segment": f"productSku=={dd(sku)}",
                "_flat_extra": {"Ecommerce_ProductSku": sku},
            }
        )
    rows.sort(key=lambda r: (-float(r["revenue"]), r["label"]))
    return rows
