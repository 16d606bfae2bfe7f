"""The hit itself: `Hit` (the exact Tracking API parameters, never a token), `OrderItem`,
`CommonFields` (the options every builder takes) and MatoKit's user agent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from matokit import __version__
from matokit.errors import HitValidationError

# Identifies MatoKit in Matomo's "browser" report. It must not contain any word Matomo's bot
# detection (device-detector's generic bot patterns) drops, nor a URL: such hits count as
# "tracked" in the bulk answer but are silently not stored.
USER_AGENT = f"MatoKit/{__version__} (command line; +matokit)"

# Parameters never allowed in a hit at all.
_FORBIDDEN = {
    "token_auth": "put the token in MATOMO_TOKEN or the token file, never in hit parameters",
    "send_image": "remove it: MatoKit needs Matomo's JSON answer",
    "cdo": "give the hit's time as `at` (or `cdt`) instead of an offset",
}

TimeLike = datetime | float | int | str


@dataclass(frozen=True)
class Hit:
    """One validated Tracking API request.

    `params` are the exact query parameters sent (never a token); `created_at` is when the hit
    was built (Unix seconds); `key` is the caller's idempotency key (import line `id`,
    `--idempotency-key`), if any.
    """

    params: dict[str, str]
    created_at: float
    key: str | None = None

    def __post_init__(self) -> None:
        if "token_auth" in self.params:
            raise HitValidationError(
                "A hit must not carry token_auth.",
                field="token_auth",
                hint=_FORBIDDEN["token_auth"],
            )

    @property
    def site_id(self) -> int:
        """The hit's idSite."""
        return int(self.params["idsite"])

    @property
    def time(self) -> int:
        """The hit's time (`cdt`) in Unix seconds, UTC."""
        return int(self.params["cdt"])


class CommonFields(TypedDict, total=False):
    """Options every hit type accepts (the CLI's common `track` options)."""

    visitor_id: str | None
    user_id: str | None
    dimensions: Mapping[int | str, str] | None
    params: Mapping[str, Any] | None
    at: TimeLike | None
    key: str | None
    clock: Callable[[], float]
    rng: Callable[[], float]


@dataclass(frozen=True)
class OrderItem:
    """One ecommerce order line."""

    sku: str
    name: str
    price: float
    quantity: int
    category: str = ""
