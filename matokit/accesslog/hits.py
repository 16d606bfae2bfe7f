"""A log line that passed the filters, as the Tracking API parameters Matomo's importer sends.

`url` is the site's scheme and host (the line's host when it logs one) and the path with its
query (up to 1024 characters); `urlref`, `cip`, `ua`, `cdt` (the line's time, clamped to now),
`uid` (the logged user name), `download` for downloads, `bw_bytes`, `pf_srv`; kept errors and
redirects get Matomo's `action_name` ("404/URL = ..."), kept bots `bots=1`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from matokit.accesslog.filters import Verdict
from matokit.accesslog.formats import LogRecord
from matokit.hits import MAX_USER_ID

MAX_URL: Final = 1024


@dataclass(frozen=True)
class HitOptions:
    """How lines become hits: `--strip-query`, `--strip-param`, `--enable-bots`."""

    strip_query: bool = False
    strip_params: frozenset[str] = frozenset()
    bots: bool = False


def query_without(query: str, names: frozenset[str]) -> str:
    """`query` without the parameters called `names` (`a=1&utm_source=x` -> `a=1`)."""
    if not names or not query:
        return query
    kept = [p for p in query.split("&") if p.split("=", 1)[0] not in names]
    return "&".join(kept)


def hit_params(
    record: LogRecord,
    *,
    site: int,
    when: int,
    base: str,
    verdict: Verdict,
    key: str,
    options: HitOptions,
) -> dict[str, str]:
    """The Tracking API parameters of one log line (no token, never)."""
    path = record.path or "/"
    query = "" if options.strip_query else query_without(record.query, options.strip_params)
    target = path + "?" + query if query else path
    url = base + target[:MAX_URL] if target.startswith("/") else target[:MAX_URL]
    params = {
        "idsite": str(site),
        "rec": "1",
        "apiv": "1",
        "url": url,
        "cip": record.ip,
        "cdt": str(when),
        "dp": "1",
        "rand": str(int(key[:8], 16)),
    }
    referrer = record.referrer[:MAX_URL]
    if referrer:
        params["urlref"] = referrer
    if record.user_agent:
        params["ua"] = record.user_agent
    userid = record.userid
    if userid and len(userid) <= MAX_USER_ID:
        params["uid"] = userid
    length = record.length
    if length.isdigit() and length != "0":
        params["bw_bytes"] = length
    if record.gen_ms is not None and record.gen_ms > 0:
        params["pf_srv"] = str(int(record.gen_ms))
    if verdict.download:
        params["download"] = url
    if verdict.error:
        title = f"{record.status}/URL = {quote(url, safe='')}"
        if referrer:
            title += f"/From = {quote(referrer, safe='')}"
        params["action_name"] = title
    if options.bots:
        params["bots"] = "1"
    return params
