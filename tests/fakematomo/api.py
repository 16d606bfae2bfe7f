"""index.php?module=API: authentication, Matomo's error table, and the methods MatoKit uses."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from tests.fakematomo import api_reports, dimensions, live_api
from tests.fakematomo.access import Access
from tests.fakematomo.call import Call
from tests.fakematomo.errors import ApiError, needs_some_access, needs_superuser
from tests.fakematomo.metadata import report_metadata
from tests.fakematomo.render import FORMATS, render, render_error
from tests.fakematomo.replies import LOGIN_HTML, Reply
from tests.fakematomo.state import ServerState
from tests.fakematomo.visits import VisitCache

VERSION = "5.11.2"
BLOCKED = "Too many failed logins. Please wait and try logging in again later."
DB_DOWN = "SQLSTATE[HY000] [2002] Connection refused"
BAD_TOKEN = "Unable to authenticate with the provided token. It is either invalid or expired."
BAD_TOKEN_IN_URL = (
    "Unable to authenticate with the provided token. It is either invalid, expired or is "
    "required to be sent as a POST parameter."
)
_METHOD = re.compile(r"([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)")
_URLS = re.compile(r"urls\[(\d*)\]")

Handler = Callable[[Call], Any]


@dataclass(frozen=True)
class ApiRequest:
    """What the HTTP layer hands over: merged parameters (query wins) and the token's origin."""

    params: dict[str, str]
    pairs: list[tuple[str, str]]
    token: str | None
    token_in_url: bool
    ip: str


# --- methods ----------------------------------------------------------------------------------


def _version(call: Call) -> dict[str, str]:
    call.some_access("view")
    return {"value": VERSION}


def _plugin_activated(call: Call) -> dict[str, bool]:
    call.some_access("view")
    name = call.require("pluginName")
    return {"value": name in PLUGINS and name not in call.state.deactivated_plugins}


def _metadata(call: Call) -> list[dict[str, Any]]:
    idsite = call.site(call.require("idSite"))
    return report_metadata(idsite, call.param("period", "day"), call.param("date", "today"))


def _site_from_id(call: Call) -> dict[str, Any]:
    idsite = call.site(call.require("idSite"))
    return call.state.sites[idsite].as_api_dict()


def _sites_from_url(call: Call) -> list[dict[str, str]]:
    """Like Matomo's: the URL given, and it with http(s):// and www. added or removed, matched
    exactly against main and alias URLs of the sites the user can see (anonymous: none), as
    `[{"idsite": "1"}]` (strings, from the database)."""
    url = call.require("url").rstrip("/")
    hostname = url.replace("www.", "").replace("http://", "").replace("https://", "")
    variants = {
        url,
        f"http://{hostname}",
        f"http://www.{hostname}",
        f"https://{hostname}",
        f"https://www.{hostname}",
    }
    visible = call.access.view_sites(call.state.sites) if call.access else []
    return [{"idsite": str(i)} for i in visible if variants & call.state.sites[i].urls]


def _view_ids(call: Call) -> list[int]:
    return call.access.view_sites(call.state.sites) if call.access else []


def _admin_ids(call: Call) -> list[int]:
    return call.access.admin_sites(call.state.sites) if call.access else []


def _sites_with_view(call: Call) -> list[dict[str, Any]]:
    return [call.state.sites[i].as_api_dict() for i in _view_ids(call)]


def _all_site_ids(call: Call) -> list[int]:
    if not (call.access and call.access.superuser):
        raise needs_superuser()
    return sorted(call.state.sites)


def _get_user(call: Call) -> dict[str, Any]:
    login = call.require("userLogin")
    acc = call.access
    if acc is None or (not acc.superuser and acc.login != login):
        raise ApiError(f"The user has to be either a Super User or the user '{login}' itself.", 401)
    found = next((a for a in call.state.tokens.values() if a.login == login), None)
    if found is None:
        raise ApiError(f"The user '{login}' doesn't exist.")
    return {
        "login": found.login,
        "email": found.email,
        "superuser_access": int(found.superuser),
        "invite_status": "active",
    }


def _has_superuser(call: Call) -> dict[str, bool]:
    return {"value": bool(call.access and call.access.superuser)}


def _tracking_failures(call: Call) -> list[dict[str, Any]]:
    acc = call.access
    if acc is None or not (acc.superuser or acc.admin_sites(call.state.sites)):
        raise needs_some_access("admin")
    with call.state.lock:
        rows = [dict(row) for row in call.state.tracking_failures]
    if acc.superuser:
        return rows
    return [row for row in rows if acc.can_admin(int(row["idsite"]))]


def _delete_failures(call: Call) -> dict[str, str]:
    if not (call.access and call.access.superuser):
        raise needs_superuser()
    with call.state.lock:
        call.state.tracking_failures.clear()
    return {"result": "success", "message": "ok"}


def _delete_site(call: Call) -> dict[str, str]:
    idsite = call.site(call.require("idSite"))
    if not (call.access and call.access.superuser):
        raise needs_superuser()
    with call.state.lock:
        del call.state.sites[idsite]
    return {"result": "success", "message": "ok"}


def _bulk(call: Call) -> list[Any]:
    urls = sorted(
        ((int(m[1]) if m[1] else 10**9 + n, v) for n, (k, v) in enumerate(call.pairs)
         if (m := _URLS.fullmatch(k))),
        key=lambda pair: pair[0],
    )  # fmt: skip
    if not urls:
        call.require("urls")
    results = []
    for _index, url in urls:
        sub = dict(parse_qsl(url.lstrip("?"), keep_blank_values=True))
        if sub.get("method") == "API.getBulkRequest":
            continue  # Matomo skips nested bulk requests
        sub_call = Call(call.state, call.visits, sub, [], call.access, call.ip)
        try:
            results.append(dispatch(sub_call))
        except ApiError as exc:
            results.append({"result": "error", "message": exc.message})
    return results


def _reporter(method: str) -> Handler:
    return lambda call: api_reports.report(call, method)


# plugin -> method -> (required parameters, handler)
PLUGINS: dict[str, dict[str, tuple[tuple[str, ...], Handler]]] = {
    "API": {
        "getMatomoVersion": ((), _version),
        "getPiwikVersion": ((), _version),
        "getBulkRequest": ((), _bulk),
        "getReportMetadata": (("idSite",), _metadata),
        "isPluginActivated": (("pluginName",), _plugin_activated),
    },
    "SitesManager": {
        "getSiteFromId": (("idSite",), _site_from_id),
        "getSitesIdFromSiteUrl": (("url",), _sites_from_url),
        "getSitesIdWithAtLeastViewAccess": ((), _view_ids),
        "getSitesIdWithAdminAccess": ((), _admin_ids),
        "getSitesWithAtLeastViewAccess": ((), _sites_with_view),
        "getAllSitesId": ((), _all_site_ids),
        "deleteSite": (("idSite",), _delete_site),
    },
    "UsersManager": {
        "getUser": (("userLogin",), _get_user),
        "hasSuperUserAccess": ((), _has_superuser),
    },
    "CoreAdminHome": {
        "getTrackingFailures": ((), _tracking_failures),
        "deleteAllTrackingFailures": ((), _delete_failures),
    },
    "Live": {
        "getLastVisitsDetails": (("idSite",), live_api.last_visits),
        "getCounters": (("idSite", "lastMinutes"), live_api.counters),
    },
    "BulkTracking": {},
    "CustomDimensions": {
        "configureNewCustomDimension": (
            ("idSite", "name", "scope", "active"),
            dimensions.api_configure_new,
        ),
        "configureExistingCustomDimension": (
            ("idDimension", "idSite", "name", "active"),
            dimensions.api_configure_existing,
        ),
        "getConfiguredCustomDimensions": (("idSite",), dimensions.api_list),
    },
    "Login": {},
}
# The methods above that change the server's state (the rest only read it).
WRITES = frozenset(
    {
        "SitesManager.deleteSite",
        "CoreAdminHome.deleteAllTrackingFailures",
        "CustomDimensions.configureNewCustomDimension",
        "CustomDimensions.configureExistingCustomDimension",
    }
)
for _name in api_reports.REPORTS:
    _plugin, _action = _name.split(".")
    PLUGINS.setdefault(_plugin, {})[_action] = (api_reports.REPORT_PARAMS, _reporter(_name))


def dispatch(call: Call) -> Any:
    """Run one method; raises ApiError with Matomo's message and status."""
    method = call.params.get("method", "")
    if not method:
        raise ApiError(
            "The parameter 'method' isn't set in the Request, and a default value wasn't provided."
        )
    m = _METHOD.fullmatch(method)
    if not m:
        raise ApiError("The method name is invalid. Expected 'module.methodName'")
    plugin, action = m[1], m[2]
    if plugin not in PLUGINS:
        raise ApiError(f"The plugin {plugin} was not found.", 404)
    if plugin in call.state.deactivated_plugins:
        # Installed but deactivated (PluginDeactivatedException: a plain exception, HTTP 200).
        raise ApiError(
            f"The plugin {plugin} is not enabled. You can activate the plugin on Settings > "
            "Plugins page in Matomo."
        )
    entry = PLUGINS[plugin].get(action)
    if entry is None:
        raise ApiError(
            f"The method '{action}' does not exist or is not available in the module "
            f"'\\Piwik\\Plugins\\{plugin}\\API'.",
            400,
        )
    required, handler = entry
    for name in required:
        call.require(name)
    return handler(call)


# --- the HTTP-facing entry point --------------------------------------------------------------


def authenticate(state: ServerState, req: ApiRequest) -> Access | None:
    """The token's access, None for anonymous; ApiError(401) for a bad token (counted)."""
    token = req.token
    if not token or token == "anonymous":
        return None
    acc = state.tokens.get(token)
    if acc is not None and acc.secure_only and req.token_in_url:
        acc = None
    if acc is None:
        state.record_failed_login(req.ip)
        raise ApiError(BAD_TOKEN_IN_URL if req.token_in_url else BAD_TOKEN, 401)
    return acc


def handle(
    state: ServerState, visits: VisitCache, req: ApiRequest, database_down: bool = False
) -> Reply:
    params = req.params
    if params.get("module") != "API":
        return Reply(200, LOGIN_HTML.encode(), "text/html; charset=utf-8")
    fmt = params.get("format", "xml").lower()
    if fmt not in FORMATS:
        message = (
            f"Renderer format '{fmt}' not valid. Try any of the following instead: "
            "console, csv, html, json, original, rss, tsv, xml."
        )
        return render_error(message, "xml", 200)
    try:
        if database_down:
            raise ApiError(DB_DOWN, 500)
        if state.is_blocked(req.ip):
            raise ApiError(BLOCKED, 500)
        access = authenticate(state, req)
        call = Call(state, visits, params, req.pairs, access, req.ip)
        payload = dispatch(call)
    except ApiError as exc:
        return render_error(exc.message, fmt, exc.status)
    return render(payload, fmt, 200, utf16=params.get("convertToUnicode", "1") != "0")
