"""Every journal backend satisfies the contract's shape (the behaviour: tests/test_journal*.py)."""

from __future__ import annotations

import inspect

from matokit.journal import Journal
from matokit.journal.contract import JournalStore


def test_the_sqlite_journal_has_every_method_of_the_contract() -> None:
    wanted = {
        name
        for name, _ in inspect.getmembers(JournalStore)
        if not name.startswith("_") or name in ("__enter__", "__exit__")
    }
    have = {name for name in dir(Journal)}
    assert wanted - have == set()
    for name in wanted - {"location", "__enter__", "__exit__"}:
        ours = inspect.signature(getattr(Journal, name))
        contract = inspect.signature(getattr(JournalStore, name))
        assert list(ours.parameters) == list(contract.parameters), name
