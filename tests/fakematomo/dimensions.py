"""CustomDimensions: configured per site, stored per hit when tracked, segmentable.

As in Matomo 5: ids (idcustomdimension) are numbered per site (each site's first dimension is
1); the tracker keeps a `dimension{ID}` value only for a dimension configured and ACTIVE on the
hit's site at that moment (others are ignored), trimmed to 250 characters, an action-scope
value with each action and a visit-scope value on the visit (the last one sent wins).
Segments `dimension{ID}` exist for active dimensions only.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.fakematomo.call import Call
from tests.fakematomo.errors import ApiError
from tests.fakematomo.state import ServerState

PLUGIN = "CustomDimensions"
SCOPES = ("visit", "action")
MAX_PER_SCOPE = 5  # Matomo's default number of slots per scope
MAX_VALUE = 250  # CustomDimensionsRequestProcessor::prepareValue
EXTRACTION_DIMENSIONS = ("url", "urlparam", "action_name")
_BLOCKED = ("/", "\\", "&", ".", "<", ">")
_TAG = re.compile(r"<[^>]*>")
_EXTRACTION_KEY = re.compile(r"extractions\[(\d*)\]\[(dimension|pattern)\]")


# --- configuration ----------------------------------------------------------------------------


def add(
    state: ServerState,
    idsite: int,
    name: str,
    scope: str = "action",
    active: bool = True,
    *,
    case_sensitive: bool = True,
    extractions: list[dict[str, str]] | None = None,
) -> int:
    """Configure a new dimension (no duplicate-name check: Matomo has none); its id."""
    check_name(name)
    if scope not in SCOPES:
        raise ApiError(
            f"Invalid value '{scope}' for 'scope' specified. Available scopes are: "
            "visit, action, conversion"
        )
    rules = check_extractions(extractions or [])
    if rules and scope != "action":
        raise ApiError("Extractions can be used only in scope 'action'")
    with state.lock:
        mine = [d for d in state.custom_dimensions if d["idsite"] == idsite]
        same = [d for d in mine if d["scope"] == scope]
        if len(same) >= MAX_PER_SCOPE:
            raise ApiError(
                f"All Custom Dimensions for website {idsite} in scope '{scope}' are already used."
            )
        new_id = max((d["idcustomdimension"] for d in mine), default=0) + 1
        used = {d["index"] for d in same}
        state.custom_dimensions.append(
            {
                "idcustomdimension": new_id,
                "idsite": idsite,
                "name": name,
                "index": min(i for i in range(1, MAX_PER_SCOPE + 1) if i not in used),
                "scope": scope,
                "active": active,
                "extractions": rules,
                "case_sensitive": case_sensitive,
            }
        )
        _refresh(state)
    return new_id


def configure(
    state: ServerState,
    idsite: int,
    iddimension: int,
    *,
    name: str | None = None,
    active: bool | None = None,
    case_sensitive: bool | None = None,
    extractions: list[dict[str, str]] | None = None,
) -> None:
    """Change an existing dimension (what configureExistingCustomDimension does)."""
    if name is not None:
        check_name(name)
    rules = None if extractions is None else check_extractions(extractions)
    with state.lock:
        found = _find(state, idsite, iddimension)
        if rules and found["scope"] != "action":
            raise ApiError("Extractions can be used only in scope 'action'")
        if name is not None:
            found["name"] = name
        if active is not None:
            found["active"] = active
        if case_sensitive is not None:
            found["case_sensitive"] = case_sensitive
        if rules is not None:
            found["extractions"] = rules
        _refresh(state)


def _find(state: ServerState, idsite: int, iddimension: int) -> dict[str, Any]:
    for d in state.custom_dimensions:
        if d["idsite"] == idsite and d["idcustomdimension"] == iddimension:
            return d
    raise ApiError(f"Dimension {iddimension} for website {idsite} does not exist.")


def _refresh(state: ServerState) -> None:
    """Rebuild the tracker's view (caller holds the lock): active dimensions per site."""
    tracked: dict[int, list[dict[str, Any]]] = {}
    for d in state.custom_dimensions:
        if d["active"]:
            tracked.setdefault(d["idsite"], []).append(dict(d))
    state.tracked_dimensions = {site: tuple(dims) for site, dims in tracked.items()}


def check_name(name: str) -> None:
    if not name:
        raise ApiError("A name is required.")
    if len(name.encode()) > 255:
        raise ApiError("Name contains too many characters, use up to 255 characters.")
    if _TAG.sub("", name) != name or any(c in name for c in _BLOCKED):
        raise ApiError(
            "Allowed characters are any letters, numbers, whitespace, a dash and underline."
        )


def check_extractions(extractions: list[dict[str, str]]) -> list[dict[str, str]]:
    for rule in extractions:
        if set(rule) != {"dimension", "pattern"}:
            raise ApiError(
                'Each extraction within extractions must have a key "dimension" and "pattern" only'
            )
        dimension, pattern = rule["dimension"], rule["pattern"]
        if dimension not in EXTRACTION_DIMENSIONS:
            raise ApiError(
                f"Invald dimension '{dimension}' used in an extraction. Available dimensions "
                "are: " + ", ".join(EXTRACTION_DIMENSIONS)
            )
        if pattern and dimension != "urlparam":
            opening = pattern.find("(")
            if (
                pattern.count("(") != 1
                or pattern.count(")") != 1
                or opening < 0
                or pattern.find(")", opening) < 0
            ):
                raise ApiError(
                    "You need to group exactly one part of the regular expression inside round "
                    "brackets, eg 'index_(.+).html'"
                )
    return [dict(rule) for rule in extractions]


def configured(state: ServerState, idsite: int, scope: str | None = None) -> dict[int, str]:
    """Active dimension ids of a site (optionally of one scope) -> scope; none while the
    CustomDimensions plugin is deactivated."""
    if PLUGIN in state.deactivated_plugins:
        return {}
    return {
        d["idcustomdimension"]: d["scope"]
        for d in state.tracked_dimensions.get(idsite, ())
        if scope is None or d["scope"] == scope
    }


# --- tracking ---------------------------------------------------------------------------------


def tracked_values(
    state: ServerState, idsite: int, params: dict[str, str], is_action: bool
) -> tuple[dict[int, str], dict[int, str]]:
    """The (action-scope, visit-scope) values Matomo stores for one hit: id -> value.

    Action-scope values are kept only when the hit records an action (not for a goal or an
    ecommerce request, nor a ping).
    """
    dims = state.tracked_dimensions.get(idsite)
    if not dims or PLUGIN in state.deactivated_plugins:
        return {}, {}
    action: dict[int, str] = {}
    visit: dict[int, str] = {}
    for d in dims:
        if d["scope"] == "action" and not is_action:
            continue
        value = params.get(f"dimension{d['idcustomdimension']}")
        if value is None and d["extractions"]:
            value = _extract(d, params)
        if value is None:
            continue
        target = action if d["scope"] == "action" else visit
        target[d["idcustomdimension"]] = value.strip()[:MAX_VALUE]
    return action, visit


def _extract(dimension: dict[str, Any], params: dict[str, str]) -> str | None:
    flags = 0 if dimension["case_sensitive"] else re.IGNORECASE
    for rule in dimension["extractions"]:
        pattern = rule["pattern"]
        if not pattern:
            continue
        if rule["dimension"] == "urlparam":
            query = parse_qs(urlparse(params.get("url", "")).query)
            found = query.get(pattern)
            value = found[0] if found else None
        else:
            source = params.get("url" if rule["dimension"] == "url" else "action_name", "")
            try:
                m = re.search(pattern, source, flags)
            except re.error:
                m = None
            value = m.group(1) if m and m.groups() else None
        if value:
            return value
    return None


# --- API methods ------------------------------------------------------------------------------


def _flag(call: Call, name: str, default: str | None = None) -> bool | None:
    raw = call.params.get(name, default)
    if raw is None:
        return None
    if raw not in ("0", "1"):
        raise ApiError(f"Invalid value '{raw}' for '{name}' specified. Allowed values: '0' or '1'")
    return raw == "1"


def _extractions_param(call: Call) -> list[dict[str, str]] | None:
    rules: dict[str, dict[str, str]] = {}
    for key, value in call.pairs:
        m = _EXTRACTION_KEY.fullmatch(key)
        if m:
            rules.setdefault(m[1] or str(len(rules)), {})[m[2]] = value
    if not rules:
        # A plain string is not an array: PHP falls back to the default, no extractions.
        return [] if "extractions" in call.params else None
    return list(rules.values())


def _write_access(call: Call, idsite: int) -> None:
    acc = call.access
    if not (acc and acc.can_track_privileged(idsite)):
        raise ApiError(
            "You can't access this resource as it requires 'write' access for the website id = "
            f"{idsite}.",
            401,
        )


def api_configure_new(call: Call) -> dict[str, int]:
    idsite = call.site(call.require("idSite"))
    _write_access(call, idsite)
    active = _flag(call, "active")
    case_sensitive = _flag(call, "caseSensitive", "1")
    return {
        "value": add(
            call.state,
            idsite,
            call.require("name"),
            call.require("scope"),
            bool(active),
            case_sensitive=bool(case_sensitive),
            extractions=_extractions_param(call) or [],
        )
    }


def api_configure_existing(call: Call) -> dict[str, str]:
    idsite = call.site(call.require("idSite"))
    _write_access(call, idsite)
    raw_id = call.require("idDimension")
    iddimension = int(raw_id) if raw_id.isdigit() else 0
    with call.state.lock:
        _find(call.state, idsite, iddimension)
    active = _flag(call, "active")
    configure(
        call.state,
        idsite,
        iddimension,
        name=call.params.get("name", ""),
        active=bool(active),
        case_sensitive=_flag(call, "caseSensitive"),
        extractions=_extractions_param(call) or [],
    )
    return {"result": "success", "message": "ok"}


def api_list(call: Call) -> list[dict[str, Any]]:
    idsite = call.site(call.require("idSite"))
    with call.state.lock:
        rows = [dict(d) for d in call.state.custom_dimensions if d["idsite"] == idsite]
    # Matomo casts the ids to strings and the flags to booleans (Dao\Configuration).
    for row in rows:
        row.update(
            idcustomdimension=str(row["idcustomdimension"]),
            idsite=str(row["idsite"]),
            index=str(row["index"]),
            active=bool(row["active"]),
            case_sensitive=bool(row["case_sensitive"]),
            extractions=[dict(e) for e in row["extractions"]],
        )
    return rows
