"""Which log lines become hits, the way Matomo's log importer decides it by default.

Matomo's `import_logs.py` runs its `check_*` methods in alphabetical order and stops at the
first that refuses a line, so a bot's 404 counts as an HTTP error there. The same order here:

1. download  -- the path's extension is a download extension: the hit is a download
2. hostname  -- `--include-host` (Matomo's `--hostname`) lists the line's host, when given
3. http_error -- status 4xx or 5xx (kept with `--enable-http-errors`)
4. redirect  -- status 3xx except 304 (kept with `--enable-http-redirects`)
5. path      -- `--exclude-path` globs
6. static    -- a static extension, or robots.txt (kept with `--enable-static`, as downloads)
7. bot       -- a bot user agent substring (kept with `--enable-bots`, sent with `bots=1`)

The extension is whatever follows the path's last dot, lower-cased, even inside a folder name
(`/docs/v2.1/auth` has `1/auth`). `.xml` is both a download and a static extension: static wins.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from matokit.accesslog.formats import LogRecord

STATIC_EXTENSIONS: Final = frozenset({
    "gif", "jpg", "jpeg", "png", "bmp", "ico", "svg", "svgz", "ttf", "otf", "eot", "woff",
    "woff2", "class", "swf", "css", "js", "xml", "webp", "avif",
})  # fmt: skip
STATIC_FILES: Final = frozenset({"robots.txt"})
DOWNLOAD_EXTENSIONS: Final = frozenset({
    "7z", "aac", "arc", "arj", "asf", "asx", "avi", "bin", "csv", "deb", "dmg", "doc", "docx",
    "exe", "flac", "flv", "gz", "gzip", "hqx", "ibooks", "jar", "json", "mpg", "mp2", "mp3",
    "mp4", "mpeg", "mov", "movie", "msi", "msp", "odb", "odf", "odg", "odp", "ods", "odt", "ogg",
    "ogv", "pdf", "phps", "ppt", "pptx", "qt", "qtm", "ra", "ram", "rar", "rpm", "rtf", "sea",
    "sit", "tar", "tbz", "bz2", "tgz", "torrent", "txt", "wav", "webm", "wma", "wmv", "wpd",
    "xls", "xlsx", "xml", "xsd", "z", "zip", "azw3", "epub", "mobi", "apk", "md5", "sig",
})  # fmt: skip
# Lower-case substrings of user agents Matomo's importer treats as bots: `curl` is one,
# `Wget` and `python-requests` are not.
BOT_SUBSTRINGS: Final = (
    "adsbot-google",
    "ask jeeves",
    "baidubot",
    "bot-",
    "bot/",
    "ccooter/",
    "crawl",
    "curl",
    "echoping",
    "exabot",
    "feed",
    "googlebot",
    "ia_archiver",
    "java/",
    "libwww",
    "mediapartners-google",
    "msnbot",
    "netcraftsurvey",
    "panopta",
    "pingdom.com_bot_",
    "robot",
    "spider",
    "surveybot",
    "twiceler",
    "voilabot",
    "yahoo",
    "yandex",
    "zabbix",
    "googlestackdrivermonitoring",
)
_BOT = re.compile("|".join(re.escape(s) for s in BOT_SUBSTRINGS)).search
_AGENT_CACHE_LIMIT: Final = 20_000


class Reason(StrEnum):
    """Why a line did not become a hit (the summary's keys)."""

    HOST = "host"  # not a host of --include-host
    HTTP_ERROR = "http_error"
    REDIRECT = "redirect"
    EXCLUDED = "excluded"  # --exclude-path
    STATIC = "static"
    BOT = "bot"
    INVALID_REQUEST = "invalid_request"  # the request line is not METHOD PATH PROTOCOL
    TOO_OLD = "too_old"  # older than --horizon
    UNKNOWN_HOST = "unknown_host"  # --site-from-host: no site has this host
    UNPARSABLE = "unparsable"  # not a line of the format (or no valid time)


# Skip reasons in the order the summary lists them.
REASONS: Final = tuple(Reason)


@dataclass(frozen=True)
class FilterOptions:
    """The `--enable-*`, `--exclude-path` and `--include-host` options."""

    enable_static: bool = False
    enable_bots: bool = False
    enable_http_errors: bool = False
    enable_http_redirects: bool = False
    exclude_paths: Sequence[str] = ()
    include_hosts: Sequence[str] = ()


class Verdict:
    """What the filters decided for a line that passed: a download? an error? a bot?"""

    __slots__ = ("bot", "download", "error")

    def __init__(self, download: bool, error: bool, bot: bool) -> None:
        self.download = download
        self.error = error  # an HTTP error or redirect kept by --enable-http-*
        self.bot = bot


_PLAIN: Final = Verdict(False, False, False)
_DOWNLOAD: Final = Verdict(True, False, False)


def extension(path: str) -> str:
    """What follows the last dot, lower-cased (the whole path when it has no dot)."""
    return path.rsplit(".", 1)[-1].lower()


class Filters:
    """The filters with their options: `check(record)` -> a Reason, or a Verdict when kept."""

    def __init__(self, options: FilterOptions) -> None:
        self.options = options
        self._excluded = [re.compile(fnmatch.translate(g)).match for g in options.exclude_paths]
        self._hosts = [
            re.compile(fnmatch.translate(g.lower())).match for g in options.include_hosts
        ]
        self._agents: dict[str, bool] = {}
        self._statuses: dict[str, Reason | bool] = {}

    def is_bot(self, user_agent: str) -> bool:
        """Whether Matomo's importer takes `user_agent` for a bot (cached: agents repeat)."""
        try:
            return self._agents[user_agent]
        except KeyError:
            pass
        if len(self._agents) >= _AGENT_CACHE_LIMIT:
            self._agents.clear()
        found = self._agents[user_agent] = _BOT(user_agent.lower()) is not None
        return found

    def _status(self, status: str) -> Reason | bool:
        """A status's fate: a Reason to skip it, else whether it is a kept error/redirect."""
        first = status[:1]
        if first in ("4", "5"):
            return True if self.options.enable_http_errors else Reason.HTTP_ERROR
        if first == "3" and status != "304":
            return True if self.options.enable_http_redirects else Reason.REDIRECT
        return False

    def check(self, record: LogRecord) -> Reason | Verdict:
        """Matomo's checks in Matomo's order; the first refusal is the reason."""
        path = record.path
        if path is None:
            return Reason.INVALID_REQUEST
        dot = path.rfind(".")
        # What follows the last dot; no dot: the whole path, which holds "/" (in no list).
        ext = path[dot + 1 :].lower() if dot >= 0 else ""
        download = ext in DOWNLOAD_EXTENSIONS
        if self._hosts and record.host is not None:
            host = record.host
            if not any(match(host) for match in self._hosts):
                return Reason.HOST
        try:
            error = self._statuses[record.status]
        except KeyError:
            error = self._statuses[record.status] = self._status(record.status)
        if error.__class__ is Reason:
            return error
        if self._excluded:
            for match in self._excluded:
                if match(path):
                    return Reason.EXCLUDED
        if ext in STATIC_EXTENSIONS or path.endswith("/robots.txt") or path == "robots.txt":
            if not self.options.enable_static:
                return Reason.STATIC
            download = True  # Matomo's importer tracks kept static files as downloads
        bot = False
        agent = record.user_agent
        if agent:
            try:
                bot = self._agents[agent]
            except KeyError:
                bot = self.is_bot(agent)
            if bot and not self.options.enable_bots:
                return Reason.BOT
        if not (error or bot):
            return _DOWNLOAD if download else _PLAIN
        return Verdict(download, bool(error), bot)
