"""Every journal backend satisfies the contract's shape (the behaviour: tests/test_journal*.py,
which run on each backend)."""

from __future__ import annotations

import inspect

import pytest

from matokit.journal import Journal
from matokit.journal.contract import JournalStore
from matokit.redisstore.journal import RedisJournal


@pytest.mark.parametrize("backend", [Journal, RedisJournal])
def test_every_backend_has_every_method_of_the_contract(backend: type) -> None:
    wanted = {
        name
        for name, _ in inspect.getmembers(JournalStore)
        if not name.startswith("_") or name in ("__enter__", "__exit__")
    }
    have = set(dir(backend))
    assert wanted - have == set()
    properties = {n for n in wanted if isinstance(getattr(JournalStore, n), property)}
    assert properties == {"location", "remote"}
    for name in properties:
        assert isinstance(getattr(backend, name), property), name
    for name in wanted - properties - {"__enter__", "__exit__"}:
        ours = inspect.signature(getattr(backend, name))
        contract = inspect.signature(getattr(JournalStore, name))
        assert list(ours.parameters) == list(contract.parameters), name
        for param, spec in contract.parameters.items():
            assert ours.parameters[param].kind == spec.kind, (name, param)
            assert ours.parameters[param].default == spec.default, (name, param)
