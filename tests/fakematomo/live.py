"""Live.getLastVisitsDetails: raw visits, newest first, in the shape of the sample."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

from tests.fakematomo.access import Site
from tests.fakematomo.state import MAX_ACTIONS_PER_VISIT
from tests.fakematomo.visits import COUNTRIES, REFERRER_TYPES, Visit

_ICONS = {
    "pageview": "plugins/Morpheus/images/action.svg",
    "event": "plugins/Morpheus/images/event.svg",
    "download": "plugins/Morpheus/images/download.svg",
    "outlink": "plugins/Morpheus/images/link.svg",
    "search": "plugins/Morpheus/images/search.svg",
    "goal": "plugins/Morpheus/images/goal.svg",
    "order": "plugins/Morpheus/images/ecommerceOrder.svg",
    "cart": "plugins/Morpheus/images/ecommerceAbandonedCart.svg",
    "content": "plugins/Morpheus/images/contentimpression.svg",
}
_TYPES = {
    "pageview": "action",
    "order": "ecommerceOrder",
    "cart": "ecommerceAbandonedCart",
    "content": "contentImpression",
}


def _pretty(seconds: int) -> str:
    minutes, secs = divmod(max(0, seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes}min {secs}s"
    if minutes:
        return f"{minutes} min {secs}s"
    return f"{secs}s"


def _action(
    index: int,
    hit: tuple[float, dict[str, Any], str],
    next_ts: float | None,
    zone: ZoneInfo,
    site: Site,
    values: dict[int, str],
    action_dims: list[int],
) -> dict[str, Any]:
    ts, params, kind = hit
    spent = int(next_ts - ts) if next_ts is not None else 0
    stamp = datetime.fromtimestamp(ts, zone)
    url = params.get("url", "")
    title = params.get("action_name", "")
    detail: dict[str, Any] = {
        "type": _TYPES.get(kind, kind),
        "url": url,
        "pageTitle": title if kind == "pageview" else None,
        "pageIdAction": int(hashlib.sha1(url.encode()).hexdigest()[:6], 16),
        "idpageview": params.get("pv_id", ""),
        "serverTimePretty": stamp.strftime("%b %-d, %Y %H:%M:%S"),
        "pageId": index + 1,
        "timeSpent": spent,
        "timeSpentPretty": _pretty(spent),
        "pageviewPosition": index + 1,
        "title": title or url,
        "subtitle": url,
        "icon": "",
        "iconSVG": _ICONS.get(kind, _ICONS["pageview"]),
        "timestamp": int(ts),
    }
    if kind == "event":
        detail.update(
            eventCategory=params.get("e_c", ""),
            eventAction=params.get("e_a", ""),
            title=params.get("e_c", ""),
            subtitle=params.get("e_a", ""),
        )
        if params.get("e_n"):
            detail["eventName"] = params["e_n"]
        if params.get("e_v"):
            detail["eventValue"] = _number(params["e_v"])
    elif kind == "search":
        detail["siteSearchKeyword"] = params.get("search", "")
    elif kind in ("goal", "order", "cart"):
        goal = params.get("idgoal", "")
        detail.update(goalId=goal, revenue=_number(params.get("revenue") or 0))
        if kind == "goal":
            detail["goalName"] = site.goals.get(int(goal), "") if goal.isdigit() else ""
        if kind == "order":
            detail["orderId"] = params.get("ec_id", "")
    # What the tracker stored with this action (null if nothing), for the dimensions active now.
    for iddim in action_dims:
        detail[f"dimension{iddim}"] = values.get(iddim)
    return detail


def _number(text: Any) -> int | float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return 0
    return int(value) if value.is_integer() else value


_CONVERSIONS = ("goal", "order", "cart")


def action_details(
    visit: Visit, site: Site, action_dims: list[int], max_actions: int
) -> list[dict[str, Any]]:
    """The visit's actionDetails: at most `max_actions` actions (visitor_log_maximum_actions_
    per_visit, the first ones) and at most as many conversions, in time order."""
    zone = ZoneInfo(site.timezone)
    entries = [
        (h, values) for h, values in zip(visit.hits, visit.action_dims, strict=True)
        if h[2] != "ping"
    ]  # fmt: skip
    # Time spent on an action: until the next one (one backward pass, not one per action).
    following: list[float | None] = [None] * len(entries)
    for i in range(len(entries) - 2, -1, -1):
        following[i] = entries[i + 1][0][0]
    details: list[dict[str, Any]] = []
    counts = {True: 0, False: 0}
    for i, (hit, values) in enumerate(entries):
        conversion = hit[2] in _CONVERSIONS
        if counts[conversion] >= max_actions:
            continue
        counts[conversion] += 1
        details.append(_action(i, hit, following[i], zone, site, values, action_dims))
    return details


def visit_details(
    visit: Visit,
    site: Site,
    dims: dict[int, str],
    with_actions: bool = True,
    max_actions: int = MAX_ACTIONS_PER_VISIT,
) -> dict[str, Any]:
    """One visit as Live reports it; dims maps active custom dimension ids to scopes."""
    zone = ZoneInfo(site.timezone)
    action_dims = sorted(i for i, scope in dims.items() if scope == "action")
    first = datetime.fromtimestamp(visit.first_ts, zone)
    last = datetime.fromtimestamp(visit.last_ts, zone)
    device = visit.device
    _code, ref_name = REFERRER_TYPES[visit.referrer.kind]
    octets = visit.ip.split(".")
    masked_ip = ".".join([*octets[:3], "0"]) if len(octets) == 4 else visit.ip
    revenue = sum(c.revenue for c in visit.conversions if c.idgoal == "ecommerceOrder")
    orders = sum(1 for c in visit.conversions if c.idgoal == "ecommerceOrder")
    country = COUNTRIES.get(visit.country, visit.country.upper())
    search_url = search_icon = None
    if visit.referrer.kind == "search":
        host = (urlparse(visit.referrer.url).hostname or "").removeprefix("www.")
        search_url = f"http://{host}"
        search_icon = f"plugins/Morpheus/icons/dist/searchEngines/{host}.png"
    details: dict[str, Any] = {
        "idSite": visit.idsite,
        "idVisit": visit.idvisit,
        "visitIp": masked_ip,
        "visitorId": visit.visitor_id,
        "fingerprint": hashlib.sha1(f"{visit.ua}|{visit.ip}".encode()).hexdigest()[:16],
        "actionDetails": (
            action_details(visit, site, action_dims, max_actions) if with_actions else []
        ),
        "goalConversions": len([c for c in visit.conversions if c.idgoal != "ecommerceOrder"]),
        "siteCurrency": site.currency,
        "siteCurrencySymbol": "$" if site.currency == "USD" else site.currency,
        "serverDate": first.strftime("%Y-%m-%d"),
        "visitServerHour": first.strftime("%H"),
        "lastActionTimestamp": int(visit.last_ts),
        "lastActionDateTime": last.strftime("%Y-%m-%d %H:%M:%S"),
        "siteName": site.name,
        "serverTimestamp": int(visit.last_ts),
        "firstActionTimestamp": int(visit.first_ts),
        "serverTimePretty": last.strftime("%H:%M:%S"),
        "serverDatePretty": last.strftime("%A, %B %-d, %Y"),
        "serverDatePrettyFirstAction": first.strftime("%A, %B %-d, %Y"),
        "serverTimePrettyFirstAction": first.strftime("%H:%M:%S"),
        "userId": visit.user_id,
        "visitorType": "returning" if visit.returning else "new",
        "visitorTypeIcon": None,
        "visitConverted": int(visit.converted),
        "visitConvertedIcon": None,
        "visitCount": visit.visit_count,
        "visitEcommerceStatus": "ordered" if orders else "none",
        "visitEcommerceStatusIcon": None,
        "daysSinceFirstVisit": 0,
        "secondsSinceFirstVisit": 0,
        "daysSinceLastEcommerceOrder": 0,
        "secondsSinceLastEcommerceOrder": None,
        "visitDuration": visit.length,
        "visitDurationPretty": _pretty(visit.length),
        "searches": visit.kinds["search"],
        "actions": visit.nb_actions,
        "interactions": visit.nb_actions,
        "referrerType": visit.referrer.kind,
        "referrerTypeName": ref_name,
        "referrerName": visit.referrer.name,
        "referrerKeyword": visit.referrer.keyword,
        "referrerKeywordPosition": None,
        "referrerUrl": visit.referrer.url or None,
        "referrerSearchEngineUrl": search_url,
        "referrerSearchEngineIcon": search_icon,
        "referrerSocialNetworkUrl": None,
        "referrerSocialNetworkIcon": None,
        "referrerAIAssistantUrl": None,
        "referrerAIAssistantIcon": None,
        "languageCode": "",
        "language": "Unknown",
        "deviceType": device.type if device else "Unknown",
        "deviceTypeIcon": "plugins/Morpheus/icons/dist/devices/"
        + (device.type.lower() if device else "unknown")
        + ".png",
        "deviceBrand": "Unknown",
        "deviceModel": "Unknown",
        "operatingSystem": (f"{device.os} {device.os_version}".strip() if device else "Unknown"),
        "operatingSystemName": device.os if device else "Unknown",
        "operatingSystemIcon": "plugins/Morpheus/icons/dist/os/"
        + (device.os_code if device else "UNK")
        + ".png",
        "operatingSystemCode": device.os_code if device else "UNK",
        "operatingSystemVersion": (device.os_version or "UNK") if device else "UNK",
        "browserFamily": "",
        "browserFamilyDescription": "Unknown",
        "browser": f"{device.browser} {device.browser_version}".strip() if device else "Unknown",
        "browserName": device.browser if device else "Unknown",
        "browserIcon": "plugins/Morpheus/icons/dist/browsers/"
        + (device.browser_code if device and len(device.browser_code) == 2 else "UNK")
        + ".png",
        "browserCode": device.browser_code if device else "UNK",
        "browserVersion": device.browser_version if device else "",
        "totalEcommerceRevenue": _number(revenue),
        "totalEcommerceConversions": orders,
        "totalEcommerceItems": 0,
        "totalAbandonedCartsRevenue": 0,
        "totalAbandonedCarts": 0,
        "totalAbandonedCartsItems": 0,
        "events": visit.kinds["event"],
        "continent": "Unknown",
        "continentCode": "unk",
        "country": country,
        "countryCode": visit.country,
        "countryFlag": f"plugins/Morpheus/icons/dist/flags/{visit.country}.png",
        "region": None,
        "regionCode": None,
        "city": None,
        "location": country,
        "latitude": None,
        "longitude": None,
        "visitLocalTime": first.strftime("%H:%M:%S"),
        "visitLocalHour": first.strftime("%H"),
        "daysSinceLastVisit": 0,
        "secondsSinceLastVisit": 0,
        "resolution": "unknown",
        "plugins": "",
        "pluginsIcons": None,
    }
    for iddim in sorted(i for i, scope in dims.items() if scope == "visit"):
        stored = visit.dims.get(iddim)
        details[f"dimension{iddim}"] = stored[-1] if stored else None
    return details
