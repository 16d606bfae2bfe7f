"""`ensure_key_dimension`: found, created, activated, and every way Matomo can refuse."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from matokit.client import MatomoClient
from matokit.errors import PermissionDeniedError, ProtocolError, WriteRefusedError
from matokit.exactlyonce.dimension import (
    PLUGIN_DISABLED,
    DimensionUnavailable,
    SiteDimension,
)
from matokit.exactlyonce.setup import (
    CREATE_METHOD,
    UPDATE_METHOD,
    WRITE_METHODS,
    KeyDimensionError,
    SetupFailure,
    SetupOutcome,
    ensure_key_dimension,
    ensure_on_sites,
)
from tests.conftest import SENTINEL_TOKEN
from tests.test_exactlyonce_dimension import row

BASE = "https://m.example/"
LIST = "CustomDimensions.getConfiguredCustomDimensions"
NEEDS_WRITE = "You can't access this resource as it requires 'write' access for the website id = 1."
NEEDS_ADMIN = "You can't access this resource as it requires 'admin' access for the website id = 1."
SLOTS_USED = "All Custom Dimensions for website 1 in scope 'action' are already used."


class Script:
    """Matomo's answers in the order the calls must come: (method, body[, status])."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, object, int]] = []
        self.calls: list[tuple[str, dict[str, list[str]]]] = []

    def then(self, method: str, body: object, status: int = 200) -> Script:
        self.steps.append((method, body, status))
        return self

    def error(self, method: str, message: str, status: int = 200) -> Script:
        return self.then(method, {"result": "error", "message": message}, status)

    def __call__(self, request: object) -> tuple[int, dict[str, str], str]:
        url, body = request.url, request.body  # type: ignore[attr-defined]
        method = parse_qs(urlsplit(url).query)["method"][0]
        self.calls.append((method, parse_qs(body)))
        assert SENTINEL_TOKEN not in url
        assert self.steps, f"unexpected call {method}"
        expected, answer, status = self.steps.pop(0)
        assert method == expected, f"called {method}, expected {expected}"
        return status, {"Content-Type": "application/json"}, json.dumps(answer)

    @property
    def methods(self) -> list[str]:
        return [m for m, _ in self.calls]


@pytest.fixture
def matomo() -> Iterator[Script]:
    script = Script()
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, f"{BASE}index.php", callback=script)
        yield script
    assert not script.steps, f"calls expected but not made: {script.steps}"


def client(**kwargs: object) -> MatomoClient:
    options = {"allowed_writes": WRITE_METHODS, **kwargs}
    return MatomoClient(base_url=BASE, token=SENTINEL_TOKEN, **options)  # type: ignore[arg-type]


def test_an_existing_usable_dimension_is_found_and_nothing_is_written(matomo):
    matomo.then(LIST, [row("1", name="Page type"), row("4", "2")])
    outcome = ensure_key_dimension(client(), 1)
    assert outcome == SetupOutcome(1, SiteDimension(1, 4, 2, True, "action"), "found")
    assert matomo.methods == [LIST]


def test_an_absent_dimension_is_created_active_and_its_index_read_back(matomo):
    matomo.then(LIST, [row("1", name="Page type")])
    matomo.then(CREATE_METHOD, {"value": 2})
    matomo.then(LIST, [row("1", name="Page type"), row("2", "3")])
    outcome = ensure_key_dimension(client(), 1)
    assert outcome == SetupOutcome(1, SiteDimension(1, 2, 3, True, "action"), "created")
    params = matomo.calls[1][1]
    assert {k: v[0] for k, v in params.items() if k != "token_auth"} == {
        "idSite": "1",
        "name": "matokit_key",
        "scope": "action",
        "active": "1",
        "caseSensitive": "1",
    }
    assert params["token_auth"] == [SENTINEL_TOKEN]


def test_an_inactive_action_dimension_is_activated(matomo):
    matomo.then(LIST, [row("3", "2", active=False)])
    matomo.then(UPDATE_METHOD, None)
    matomo.then(LIST, [row("3", "2", active=True)])
    outcome = ensure_key_dimension(client(), 1)
    assert outcome == SetupOutcome(1, SiteDimension(1, 3, 2, True, "action"), "activated")
    params = {k: v[0] for k, v in matomo.calls[1][1].items() if k != "token_auth"}
    assert params == {"idDimension": "3", "idSite": "1", "name": "matokit_key", "active": "1"}


def test_junk_rows_and_string_ids_do_not_hide_the_dimension(matomo):
    matomo.then(LIST, [None, "x", {"name": "matokit_key"}, row("abc"), row(" 12 ", "5")])
    outcome = ensure_key_dimension(client(), 1)
    assert (outcome.action, outcome.dimension.id, outcome.dimension.index) == ("found", 12, 5)


def test_the_name_taken_by_a_visit_scope_dimension_is_a_configuration_error(matomo):
    matomo.then(LIST, [row("2", scope="visit")])
    with pytest.raises(KeyDimensionError) as caught:
        ensure_key_dimension(client(), 1)
    error = caught.value
    assert error.site == 1
    assert "visit-scope custom dimension named matokit_key (id 2)" in error.message
    assert "Rename dimension 2" in (error.hint or "")
    assert "Administration > Websites > Custom Dimensions" in (error.hint or "")
    assert matomo.methods == [LIST]  # nothing written


def test_all_action_slots_used_is_a_configuration_error_naming_the_fix(matomo):
    matomo.then(LIST, [])
    matomo.error(CREATE_METHOD, SLOTS_USED)
    with pytest.raises(KeyDimensionError, match="action-scope custom dimension slot") as caught:
        ensure_key_dimension(client(), 1)
    assert "customdimensions:add-custom-dimension --scope=action" in (caught.value.hint or "")


@pytest.mark.parametrize("message", [NEEDS_WRITE, NEEDS_ADMIN])
def test_creating_without_admin_access_is_permission_denied_saying_admin_is_needed(matomo, message):
    matomo.then(LIST, [])
    matomo.error(CREATE_METHOD, message, 401)
    with pytest.raises(PermissionDeniedError) as caught:
        ensure_key_dimension(client(), 1)
    error = caught.value
    assert "Creating the matokit_key dimension on site 1 needs admin" in error.message
    assert "admin access" in (error.hint or "") and "view access" in (error.hint or "")
    assert error.method == CREATE_METHOD and error.status == 401
    assert isinstance(error.__cause__, PermissionDeniedError)


def test_activating_without_admin_access_is_permission_denied(matomo):
    matomo.then(LIST, [row("3", active=False)])
    matomo.error(UPDATE_METHOD, NEEDS_WRITE, 401)
    with pytest.raises(PermissionDeniedError, match="Activating the matokit_key dimension"):
        ensure_key_dimension(client(), 1)


def test_no_view_access_is_permission_denied_asking_for_an_admin_token(matomo):
    matomo.error(LIST, "You can't access this resource as it requires 'view' access...", 401)
    with pytest.raises(PermissionDeniedError, match="needs admin access") as caught:
        ensure_key_dimension(client(), 1)
    assert caught.value.method == LIST


def test_a_disabled_plugin_is_reported_as_unavailable(matomo):
    matomo.error(LIST, "The plugin CustomDimensions is not enabled. You can activate the plugin")
    with pytest.raises(DimensionUnavailable) as caught:
        ensure_key_dimension(client(), 1)
    assert caught.value.kind == PLUGIN_DISABLED


def test_a_created_dimension_matomo_does_not_list_is_a_protocol_error(matomo):
    matomo.then(LIST, []).then(CREATE_METHOD, {"value": 2}).then(LIST, [])
    with pytest.raises(ProtocolError, match="does not list it"):
        ensure_key_dimension(client(), 1)


def test_a_client_that_allows_no_writes_refuses_before_sending(matomo):
    matomo.then(LIST, [])
    with pytest.raises(WriteRefusedError):
        ensure_key_dimension(client(allowed_writes=()), 1)
    assert matomo.methods == [LIST]


def test_each_site_is_tried_once_and_a_failure_does_not_stop_the_others(matomo):
    matomo.then(LIST, [row("4")])
    matomo.error(LIST, "An unexpected website was found in the request: website id was set to '9'")
    matomo.then(LIST, [row("7", idsite="3")])
    results = ensure_on_sites(client(), [1, 9, 1, 3])
    assert [type(r) for r in results] == [SetupOutcome, SetupFailure, SetupOutcome]
    failure = results[1]
    assert isinstance(failure, SetupFailure) and failure.site == 9
    assert "unexpected website" in failure.error.message
    assert [r.site for r in results] == [1, 9, 3]
