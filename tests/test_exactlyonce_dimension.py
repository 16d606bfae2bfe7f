"""Finding `matokit_key` in Matomo's list of dimensions: parsing, junk rows, errors of the call."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from matokit.client import MatomoClient
from matokit.errors import AuthenticationError, InvalidRequestError, ProtocolError
from matokit.exactlyonce.dimension import (
    DIMENSION_NAME,
    LIST_METHOD,
    NO_VIEW_ACCESS,
    PLUGIN_DISABLED,
    DimensionUnavailable,
    SiteDimension,
    discover,
    find_key_dimension,
)
from tests.conftest import SENTINEL_TOKEN

BASE = "https://m.example/"


def row(ident: object = "4", index: object = "1", **over: object) -> dict[str, object]:
    """A row as Matomo 5 sends it: ids and index as strings, flags as booleans."""
    base: dict[str, object] = {
        "idcustomdimension": ident,
        "idsite": "1",
        "name": DIMENSION_NAME,
        "index": index,
        "scope": "action",
        "active": True,
        "extractions": [],
        "case_sensitive": True,
    }
    return {**base, **over}


# --- parsing --------------------------------------------------------------------------------


def test_ids_sent_as_strings_are_read_as_numbers():
    found = find_key_dimension(1, [row("4", "2")])
    assert found == SiteDimension(site=1, id=4, index=2, active=True, scope="action")
    assert found.usable


@pytest.mark.parametrize(
    ("active", "scope", "usable"),
    [(True, "action", True), (False, "action", False), (True, "visit", False)],
)
def test_only_an_active_action_scope_dimension_is_usable(active, scope, usable):
    found = find_key_dimension(1, [row(active=active, scope=scope)])
    assert found is not None and found.usable is usable


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("1", True), ("0", False), (1, True), (0, False)],
)
def test_active_flag_in_any_form_matomo_has_used(value, expected):
    found = find_key_dimension(1, [row(active=value)])
    assert found is not None and found.active is expected


def test_absent_when_no_row_has_the_exact_name():
    others = [row(name="Page type"), row(name="Matokit_key"), row(name="matokit_key ")]
    assert find_key_dimension(1, others) is None
    assert find_key_dimension(1, []) is None


JUNK = [
    None,
    "matokit_key",
    7,
    [],
    {"name": DIMENSION_NAME},  # no id, index, scope, active
    row("abc"),
    row("0"),
    row(-3),
    row(True),
    row("4", index=""),
    row(active="maybe"),
    row(scope=None),
    row(idsite="2"),  # another site's row
]


@pytest.mark.parametrize("junk", JUNK, ids=[repr(j)[:40] for j in JUNK])
def test_junk_rows_are_ignored(junk):
    assert find_key_dimension(1, [junk]) is None
    assert find_key_dimension(1, [junk, row("9")]) == SiteDimension(1, 9, 1, True, "action")


def test_a_usable_row_wins_over_others_of_the_same_name():
    rows = [row("1", scope="visit"), row("3", active=False), row("5", "2"), row("7", "3")]
    assert find_key_dimension(1, rows) == SiteDimension(1, 5, 2, True, "action")
    assert find_key_dimension(1, rows[:2]) == SiteDimension(1, 3, 1, False, "action")


def test_an_object_of_rows_is_read_like_a_list():
    # PHP sends an array whose keys are not 0..n-1 as a JSON object.
    assert find_key_dimension(1, {"2": row("6")}) == SiteDimension(1, 6, 1, True, "action")
    assert find_key_dimension(1, "not rows") is None


# --- the call -------------------------------------------------------------------------------


def client() -> MatomoClient:
    return MatomoClient(base_url=BASE, token=SENTINEL_TOKEN)


def answer(body: object, status: int = 200) -> None:
    responses.post(f"{BASE}index.php", body=json.dumps(body), status=status)


def error(message: str, status: int) -> None:
    answer({"result": "error", "message": message}, status)


@responses.activate
def test_discover_asks_for_the_site_with_the_token_in_the_body():
    answer([row("2", "1", name="Page type"), row("4", "2")])
    assert discover(client(), 1) == SiteDimension(1, 4, 2, True, "action")
    request = responses.calls[0].request
    assert parse_qs(urlsplit(request.url).query)["method"] == [LIST_METHOD]
    body = parse_qs(request.body)
    assert body["idSite"] == ["1"] and body["token_auth"] == [SENTINEL_TOKEN]
    assert SENTINEL_TOKEN not in request.url


@responses.activate
def test_discover_returns_none_when_the_site_has_no_key_dimension():
    answer([])
    assert discover(client(), 1) is None


@pytest.mark.parametrize(
    ("message", "status"),
    [
        (
            "You can't access this resource as it requires 'view' access for the website id = 1.",
            401,
        ),
        ("You can't access this resource as it requires view access...", 401),
    ],
)
@responses.activate
def test_no_view_access_makes_the_dimension_unavailable(message, status):
    error(message, status)
    with pytest.raises(DimensionUnavailable) as caught:
        discover(client(), 1)
    assert caught.value.kind == NO_VIEW_ACCESS and caught.value.site == 1
    assert "view access" in caught.value.message and "view access" in caught.value.reason


@pytest.mark.parametrize(
    ("message", "status"),
    [
        (
            "The plugin CustomDimensions is not enabled. You can activate the plugin on "
            "Settings > Plugins page in Matomo.",
            200,
        ),
        ("The plugin CustomDimensions is not enabled. You can activate ...", 400),
        ("The plugin CustomDimensions was not found.", 404),
    ],
)
@responses.activate
def test_a_disabled_plugin_makes_the_dimension_unavailable(message, status):
    error(message, status)
    with pytest.raises(DimensionUnavailable) as caught:
        discover(client(), 1)
    assert caught.value.kind == PLUGIN_DISABLED
    assert "CustomDimensions plugin is not enabled" in caught.value.message
    assert caught.value.reason == "Matomo's CustomDimensions plugin is not enabled"
    assert "plugin:activate CustomDimensions" in (caught.value.hint or "")


@responses.activate
def test_other_errors_propagate_unchanged():
    error("Unable to authenticate with the provided token. It is either invalid or expired.", 401)
    with pytest.raises(AuthenticationError):
        discover(client(), 1)
    error("An unexpected website was found in the request: website id was set to '9' .", 200)
    with pytest.raises(InvalidRequestError):
        discover(MatomoClient(base_url=BASE, token=None), 9)


@pytest.mark.parametrize("body", [{"value": 3}, "x", 5, {"a": [1]}])
@responses.activate
def test_an_answer_that_is_not_a_list_of_dimensions_is_a_protocol_error(body):
    # Reading it as "no dimension" would make setup create a second one.
    answer(body)
    with pytest.raises(ProtocolError, match="not a list of dimensions"):
        discover(client(), 1)
