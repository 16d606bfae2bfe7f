"""Durable delivery: send-or-journal, import, flush. The only package joining client and journal.

Every hit ends in exactly one of: delivered (acknowledged by Matomo's bulk answer), queued in
the journal (pending, or sent_unconfirmed when an answer was lost after sending), dead (with a
reason an operator can act on), or unattributed (Matomo refused some hits of a batch without
saying which: the others are stored, so re-sending would count them twice).

Decisions, in the order a flush meets them:

* One flusher per profile (`flush_lock`). While it holds the lock, any `inflight` entry belongs
  to a flusher that died: it is made due again at once, counted as sent_unconfirmed.
* Hits are claimed oldest first under a lease, in batches of `batch_size`.
* Hits older than 24 h need a token with admin access on their site: the token is checked once
  per flush (`SitesManager.getSitesIdWithAdminAccess`) before any is replayed. An invalid token
  stops the flush with the hits pending; a valid token without admin access makes them dead.
* Only a superuser token gets `invalid_indices`, so with any other token a refused hit inside a
  bulk cannot be identified. Hits at risk of refusal (time near or past 24 h, or a site not yet
  seen to accept hits in this flush) are therefore sent alone; the others in full batches.
  Superuser-ness is learned from the answers themselves (no extra request with the token).
* A whole-batch failure reschedules the batch with capped exponential backoff and full jitter
  (at least Retry-After) and stops the flush: no hammering a Matomo that is down or throttling.
  A failure after sending (`maybe_stored`) marks the hits sent_unconfirmed before any re-send.
* A Retry-After (429/503) pauses the whole profile (`matokit.serverpause`, recorded by the
  client): a flush during the pause claims nothing, `track` journals at once.
* An invalid token (or its cool-down, or a lockout) stops the flush after that one request,
  the hits released untouched.
* `max_attempts` and `max_age` end in dead letters, never in silent loss.

Core rules: no printing, no exiting; progress and warnings go through callbacks and results.

Modules: `service` (`Delivery`, the entry point), `send` (send-or-journal for `track`),
`importer`, `lines` and `importhelper` (streaming JSON Lines import, with a helper process for
the second half of a large file), `flush` (the flush engine), `matomo` (the client protocol and
Matomo's rules for old hits), `records` (hits to journal records and back), `outcomes` (what
each operation reports), `ports` (what each operation needs of `Delivery`: the operations take
these narrow protocols and never import `service`). Import the public names from
`matokit.delivery`.
"""

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> the module that defines it. Loaded on first use (PEP 562), so that a module of
# the package (the import helper process, `track`) loads only what it needs: the flush engine
# and the HTTP client alone take a quarter of a second to import here.
_EXPORTS = {
    "BACKOFF_BASE": "flush",
    "BACKOFF_CAP": "flush",
    "MAX_DELAY": "flush",
    "PARALLEL_MIN_BYTES": "importhelper",
    "IMPORT_CHUNK": "lines",
    "PIPE_CHUNK": "lines",
    "ADMIN_METHOD": "matomo",
    "AT_RISK_AGE": "matomo",
    "OLD_HIT_AGE": "matomo",
    "ClientFactory": "matomo",
    "TrackingClient": "matomo",
    "DEFAULT_LEASE": "outcomes",
    "FlushOptions": "outcomes",
    "FlushResult": "outcomes",
    "ImportResult": "outcomes",
    "Progress": "outcomes",
    "TrackOutcome": "outcomes",
    "TrackState": "outcomes",
    "hit_key": "records",
    "import_key": "records",
    "new_hit": "records",
    "Delivery": "service",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from matokit.delivery.flush import BACKOFF_BASE, BACKOFF_CAP, MAX_DELAY
    from matokit.delivery.importhelper import PARALLEL_MIN_BYTES
    from matokit.delivery.lines import IMPORT_CHUNK, PIPE_CHUNK
    from matokit.delivery.matomo import (
        ADMIN_METHOD,
        AT_RISK_AGE,
        OLD_HIT_AGE,
        ClientFactory,
        TrackingClient,
    )
    from matokit.delivery.outcomes import (
        DEFAULT_LEASE,
        FlushOptions,
        FlushResult,
        ImportResult,
        Progress,
        TrackOutcome,
        TrackState,
    )
    from matokit.delivery.records import hit_key, import_key, new_hit
    from matokit.delivery.service import Delivery

__all__ = [
    "ADMIN_METHOD",
    "AT_RISK_AGE",
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "DEFAULT_LEASE",
    "IMPORT_CHUNK",
    "MAX_DELAY",
    "OLD_HIT_AGE",
    "PARALLEL_MIN_BYTES",
    "PIPE_CHUNK",
    "ClientFactory",
    "Delivery",
    "FlushOptions",
    "FlushResult",
    "ImportResult",
    "Progress",
    "TrackOutcome",
    "TrackState",
    "TrackingClient",
    "hit_key",
    "import_key",
    "new_hit",
]
