"""Web server access logs into Matomo, exactly once: `matokit track access-log`.

Modules: `formats` (line parsers, auto-detection), `times` (log times to Unix seconds),
`filters` (what becomes a hit, in Matomo's importer's order), `hits` (a line's Tracking API
parameters), `keys` (idempotency keys: site, content, occurrence), `reader` (plain, gzip,
bzip2, stdin; line splitting), `checkpoint` (where a re-run resumes), `state` (the profile's
access-log state file: keys, pending keys, checkpoints, site answers), `sites` (site and URL
of a line), `locks` (one importer per file), `fileimport` (one file into the journal),
`importer` (a run and its flush), `follow` (`--follow`), `summary` (counts by reason).

Library rules as everywhere in MatoKit: nothing here prints; errors are `matokit.errors`.
"""

from matokit.accesslog.filters import FilterOptions, Reason
from matokit.accesslog.hits import HitOptions
from matokit.accesslog.importer import (
    DEFAULT_HORIZON,
    AccessLogImport,
    AccessLogOptions,
    AccessLogResult,
)
from matokit.accesslog.summary import FileSummary, Summary

__all__ = [
    "DEFAULT_HORIZON",
    "AccessLogImport",
    "AccessLogOptions",
    "AccessLogResult",
    "FileSummary",
    "FilterOptions",
    "HitOptions",
    "Reason",
    "Summary",
]
