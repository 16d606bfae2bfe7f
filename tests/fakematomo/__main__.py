"""Standalone: `python -m tests.fakematomo --port 0` prints its base URL, serves until SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from tests.fakematomo.access import ADMIN_TOKEN, SUPERUSER_TOKEN, VIEW_TOKEN
from tests.fakematomo.faults import Fault
from tests.fakematomo.server import FakeMatomo
from tests.fakematomo.state import MAX_ACTIONS_PER_VISIT


def build(argv: list[str] | None = None) -> FakeMatomo:
    """The server the command line describes, configured and not started."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakematomo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument(
        "--no-request-log",
        action="store_true",
        help="do not keep every request in memory (long benchmarks)",
    )
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    parser.add_argument(
        "--hits", metavar="FILE", help="JSON Lines of tracking parameters to store at start"
    )
    parser.add_argument(
        "--visitor-log-maximum-actions-per-visit",
        type=int,
        default=MAX_ACTIONS_PER_VISIT,
        metavar="N",
        help="Live shows at most N actions of a visit (Matomo's default: 500)",
    )
    parser.add_argument(
        "--visible-after",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="stored hits show in Live and reports only this long after they were stored",
    )
    parser.add_argument(
        "--custom-dimension",
        action="append",
        default=[],
        metavar="IDSITE:NAME[:SCOPE]",
        help="configure an active custom dimension at start (scope: action by default)",
    )
    parser.add_argument(
        "--disable-visits-log",
        action="append",
        default=[],
        metavar="IDSITE|all",
        help="Live's 'disable visits log' setting for a site, or for all (globally)",
    )
    parser.add_argument(
        "--deactivate-plugin",
        action="append",
        default=[],
        metavar="NAME",
        help="answer the plugin's API methods with 'The plugin NAME is not enabled' (e.g. Live)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="PHP workers: at most N requests processed at once, more wait (default: unlimited)",
    )
    parser.add_argument(
        "--hit-cost",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="work per tracked hit, on a worker, holding the visit's lock (default: 0)",
    )
    parser.add_argument(
        "--deadlock-on-contention",
        action="store_true",
        help="a request that would wait for a locked visit is rolled back (500, tracked 0)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=None,
        metavar="N",
        help="a proxy's 413 for request bodies above N bytes (default: no limit)",
    )
    args = parser.parse_args(argv)
    srv = FakeMatomo(
        host=args.host,
        port=args.port,
        record_requests=not args.no_request_log,
        verbose=args.verbose,
        visitor_log_maximum_actions_per_visit=args.visitor_log_maximum_actions_per_visit,
        visible_after=args.visible_after,
        workers=args.workers,
        hit_cost=args.hit_cost,
        deadlock_on_contention=args.deadlock_on_contention,
        max_body_bytes=args.max_body_bytes,
    )
    for spec in args.custom_dimension:
        idsite, _, rest = spec.partition(":")
        name, _, scope = rest.partition(":")
        srv.add_custom_dimension(int(idsite), name, scope or "action")
    for which in args.disable_visits_log:
        srv.disable_visits_log(None if which == "all" else int(which))
    for plugin in args.deactivate_plugin:
        srv.deactivate_plugin(plugin)
    if args.hits:
        srv.load_hits(args.hits)
    if args.latency > 0:
        srv.add_fault(Fault(endpoint="any", latency=args.latency))
    return srv


def main(argv: list[str] | None = None) -> int:
    srv = build(argv)
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    srv.start()
    # The first stdout line is the contract with whoever started us.
    print(srv.url, flush=True)
    print(
        f"tokens: superuser={SUPERUSER_TOKEN} admin={ADMIN_TOKEN} view={VIEW_TOKEN}",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not done.wait(0.5):
            pass
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
