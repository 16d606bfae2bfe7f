"""Which sites' hits carry their key, and whether lookups work there: the `exactly_once` policy.

`auto` stamps hits of sites that have an active action-scoped `matokit_key` dimension and looks
them up after an uncertain send; `on` refuses to send to a site without one (its hits wait, and
say why); `off` does neither. The site -> dimension map is discovered with view access
(`CustomDimensions.getConfiguredCustomDimensions`) and remembered in the journal for a day.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from matokit.errors import (
    ConfigError,
    InvalidRequestError,
    NoMatomoError,
    NotFoundError,
    StorageError,
)
from matokit.exactlyonce.dimension import DIMENSION_NAME, DimensionUnavailable, discover

if TYPE_CHECKING:
    from matokit.journal import SiteRecord
    from matokit.journal.contract import JournalStore

log = logging.getLogger("matokit.exactlyonce")

AUTO: Final = "auto"
ON: Final = "on"
OFF: Final = "off"


class KeyDimensionRequired(ConfigError):
    """`exactly_once = on` and the site has no usable `matokit_key` dimension (exit 78)."""

    def __init__(self, site: int, why: str) -> None:
        super().__init__(
            f"exactly_once = on, and site {site} cannot take idempotency keys: {why}",
            hint=f"Run `matokit setup exactly-once --site {site}` with an admin token, or set "
            "exactly_once = auto to send without exactly-once.",
        )
        self.site = site


class KeySites:
    """The profile's exactly-once mode and each site's key dimension, for one run."""

    def __init__(
        self,
        journal: Callable[[], JournalStore],
        client: Callable[[], Any],
        *,
        mode: str,
        has_token: bool,
        clock: Callable[[], float],
    ) -> None:
        self._journal = journal  # opened only when a mode other than off needs it
        self._client = client
        self.mode = mode
        self.has_token = has_token
        self.clock = clock
        self._records: dict[int, SiteRecord] | None = None
        self._asked: dict[int, int | None] = {}
        self._why: dict[int, str] = {}

    @property
    def enabled(self) -> bool:
        """Whether hits may carry keys at all (`exactly_once` is not off)."""
        return self.mode != OFF

    def records(self) -> dict[int, SiteRecord]:
        """The journal's site records, read once per run (refreshed by `dimension`).

        An unusable journal reads as "nothing remembered": `track` still sends (asking Matomo).
        """
        if self._records is None:
            try:
                self._records = self._journal().site_dimensions()
            except StorageError as exc:
                log.warning("cannot read the key dimensions from the journal: %s", exc)
                self._records = {}
        return self._records

    def dimension(self, site: int) -> int | None:
        """The key dimension `site`'s hits carry now (None: none), asking Matomo when the
        remembered answer is older than a day. Raises MatomoError when Matomo cannot answer."""
        if not self.enabled:
            return None
        if site in self._asked:
            return self._asked[site]
        record = self.records().get(site)
        now = self.clock()
        if record is not None and record.fresh(now):
            self._asked[site] = record.dimension
            if record.dimension is None:
                self._why[site] = f"it has no active action-scoped {DIMENSION_NAME} dimension"
            return record.dimension
        if not self.has_token:
            self._asked[site] = None
            self._why[site] = "no token is configured (finding the dimension needs view access)"
            return None
        try:
            found = discover(self._client(), site)
        except DimensionUnavailable as exc:
            found = None
            self._why[site] = exc.reason
        except (InvalidRequestError, NotFoundError) as exc:
            # Matomo refused the question for this site (an unknown site, say): its hits go
            # without a key and meet Matomo's verdict; the flush is not stopped for them.
            if isinstance(exc, NoMatomoError):
                raise
            found = None
            self._why[site] = f"Matomo refused to list its dimensions: {exc.message}"
        dimension = found.id if found is not None and found.usable else None
        if found is None and site not in self._why:
            self._why[site] = f"it has no {DIMENSION_NAME} dimension"
        elif found is not None and not found.usable:
            self._why[site] = f"its {DIMENSION_NAME} dimension is inactive or not action-scoped"
        try:
            self._journal().remember_dimension(site, dimension)
        except StorageError as exc:
            log.warning("cannot remember site %s's key dimension: %s", site, exc)
        self._records = None
        self._asked[site] = dimension
        return dimension

    def known_dimension(self, site: int) -> int | None:
        """The key dimension `dimension(site)` already gave in this run (None: none, or not
        asked yet); never asks Matomo."""
        return self._asked.get(site)

    def require(self, site: int) -> int | None:
        """`dimension(site)`, raising KeyDimensionRequired under `on` when there is none."""
        dimension = self.dimension(site)
        if dimension is None and self.mode == ON:
            raise KeyDimensionRequired(site, self.why(site))
        return dimension

    def why(self, site: int) -> str:
        """Why `site` has no key dimension (after `dimension` said None)."""
        return self._why.get(site, f"it has no active action-scoped {DIMENSION_NAME} dimension")

    def lookups_work(self, site: int) -> bool:
        """Whether an uncertain send to `site` is to be looked up rather than re-sent.

        Under `on` always (hits wait until lookups work again); under `auto` unless Matomo
        refused lookups there within the last day (Live off, no view access).
        """
        if not self.enabled:
            return False
        if self.mode == ON:
            return True
        record = self.records().get(site)
        return record is None or not record.lookups_unavailable(self.clock())

    def unavailable(self) -> dict[int, str]:
        """Sites where lookups failed within the last day, with Matomo's reason."""
        now = self.clock()
        return {
            site: record.unavailable or "lookups refused"
            for site, record in self.records().items()
            if record.lookups_unavailable(now)
        }

    def mark_unavailable(self, site: int, reason: str) -> None:
        """Matomo refused lookups on `site`: remember it (a day) for every process."""
        self._journal().mark_lookups_unavailable(site, reason)
        self._records = None
