"""CustomDimensions: configured per site; only configured dimensions are kept and segmentable.

Matomo ignores a `dimensionN` tracking parameter for a dimension that does not exist, and a
segment on it is an error. Ids are global (idcustomdimension), as in Matomo.
"""

from __future__ import annotations

from typing import Any

from tests.fakematomo.call import Call
from tests.fakematomo.errors import ApiError
from tests.fakematomo.state import ServerState

SCOPES = ("visit", "action")
MAX_PER_SCOPE = 5  # Matomo's default number of slots per scope


def add(
    state: ServerState, idsite: int, name: str, scope: str = "action", active: bool = True
) -> int:
    if scope not in SCOPES:
        raise ApiError(
            f"Invalid value '{scope}' for 'scope' specified. Allowed values: visit, action"
        )
    if not name.strip():
        raise ApiError("Please specify a value for 'name'.", 400)
    with state.lock:
        same = [d for d in state.custom_dimensions if d["idsite"] == idsite and d["scope"] == scope]
        if len(same) >= MAX_PER_SCOPE:
            raise ApiError(
                f"All Custom Dimensions for website {idsite} in scope '{scope}' are already used."
            )
        new_id = len(state.custom_dimensions) + 1
        state.custom_dimensions.append(
            {
                "idcustomdimension": new_id,
                "idsite": idsite,
                "name": name,
                "index": len(same) + 1,
                "scope": scope,
                "active": active,
                "extractions": [],
                "case_sensitive": True,
            }
        )
    return new_id


def configured(state: ServerState, idsite: int, scope: str | None = None) -> dict[int, str]:
    """Active dimension ids of a site (optionally of one scope) -> scope."""
    with state.lock:
        return {
            d["idcustomdimension"]: d["scope"]
            for d in state.custom_dimensions
            if d["idsite"] == idsite and d["active"] and (scope is None or d["scope"] == scope)
        }


def api_configure(call: Call) -> dict[str, int]:
    idsite = call.site(call.require("idSite"))
    if not (call.access and call.access.can_admin(idsite)):
        raise ApiError(
            "You can't access this resource as it requires 'admin' access for the website id = "
            f"{idsite}.",
            401,
        )
    active = call.param("active", "1") not in ("0", "false", "")
    return {"value": add(call.state, idsite, call.require("name"), call.require("scope"), active)}


def api_list(call: Call) -> list[dict[str, Any]]:
    idsite = call.site(call.require("idSite"))
    with call.state.lock:
        rows = [dict(d) for d in call.state.custom_dimensions if d["idsite"] == idsite]
    # Matomo sends these ids and flags as strings.
    for row in rows:
        row.update(
            idcustomdimension=str(row["idcustomdimension"]),
            idsite=str(row["idsite"]),
            index=str(row["index"]),
        )
    return rows
