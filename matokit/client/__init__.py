"""MatomoClient: Matomo's tracking and reporting HTTP APIs over an injected requests.Session.

Three layers (like stripe-python's requestor/http-client split):
  * the wire (`core.MatomoClient._send`, `transport`) is the only place that touches the
    network: token cool-down check, rate limit, timeouts, TLS, logging, and translation of
    every requests/urllib3 exception into a typed `MatomoError` (chained, redacted);
  * the interpreters (`tracking`, `reporting`, with `failures`) turn Matomo's answers into
    values or typed errors (Matomo's status codes are unreliable: the body decides);
  * the public methods (`track`, `call`, `call_raw`, `bulk`) build requests.

The token travels only in POST bodies (form field or bulk JSON), never in a URL. Tracking is
never retried here: a re-sent hit is counted twice, so that decision belongs to the caller
(delivery), which gets `maybe_stored` on every failure that happened after the body was sent.

Modules: `core` (MatomoClient), `tracking` (bulk tracking requests and per-hit outcomes),
`reporting` (Reporting API forms and answers), `failures` (Matomo's errors as typed errors),
`transport` (base URL, sessions, transport failures). requests is imported only where used.
"""

from __future__ import annotations

from matokit.client.core import MatomoClient
from matokit.client.tracking import (
    TRACKING,
    Outcome,
    PreparedRequest,
    TrackResult,
    bulk_outcomes,
    dry_run_view,
    prepare_tracking,
    render_dry_run,
)
from matokit.client.transport import (
    mount_connect_retries,
    normalize_base_url,
    request_may_have_been_sent,
)
from matokit.hits import USER_AGENT

__all__ = [
    "TRACKING",
    "USER_AGENT",
    "MatomoClient",
    "Outcome",
    "PreparedRequest",
    "TrackResult",
    "bulk_outcomes",
    "dry_run_view",
    "mount_connect_retries",
    "normalize_base_url",
    "prepare_tracking",
    "render_dry_run",
    "request_may_have_been_sent",
]
