"""What an access-log run counted, per file and in total: lines, hits, and skips by reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from matokit.accesslog.filters import REASONS, Reason

MAX_LINE_NUMBERS: Final = 5  # unparsable lines named per file


@dataclass
class FileSummary:
    """One file of the run."""

    name: str
    format: str | None = None
    detected: bool = False  # the format was detected (--log-format auto)
    start_line: int = 0  # lines skipped thanks to its checkpoint
    lines: int = 0  # lines read by this run (blank ones not counted)
    hits: int = 0  # lines that became hits (journaled now, or already imported before)
    imported: int = 0  # hits journaled by this run
    duplicates: int = 0  # hits already imported (or journaled) before
    downloads: int = 0  # of `hits`, downloads
    skipped: dict[Reason, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    unparsable: list[tuple[int, str]] = field(default_factory=list)  # first line numbers
    error: str | None = None  # why the file stopped early (cut short, binary, no format)
    busy: bool = False  # another matokit was importing it: left alone
    vanished: bool = False  # no such file (not rotated yet, or rotated away since named)

    def skip(self, reason: Reason, line: int = 0, why: str = "") -> None:
        """Count a line that did not become a hit (noting the first unparsable ones)."""
        self.skipped[reason] += 1
        if reason is Reason.UNPARSABLE and len(self.unparsable) < MAX_LINE_NUMBERS:
            self.unparsable.append((line, why))

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (`--format json`)."""
        data: dict[str, Any] = {
            "file": self.name,
            "format": self.format,
            "format_detected": self.detected,
            "resumed_after_line": self.start_line,
            "lines": self.lines,
            "hits": self.hits,
            "imported": self.imported,
            "duplicates": self.duplicates,
            "downloads": self.downloads,
            "skipped": {str(k): v for k, v in self.skipped.items()},
            "unparsable_lines": [{"line": n, "reason": why} for n, why in self.unparsable],
        }
        if self.error:
            data["error"] = self.error
        if self.busy:
            data["busy"] = True
        if self.vanished:
            data["vanished"] = True
        return data


@dataclass
class Summary:
    """Every file of the run, and their totals."""

    files: list[FileSummary] = field(default_factory=list)

    def add(self, name: str) -> FileSummary:
        """A new file's summary."""
        found = FileSummary(name)
        self.files.append(found)
        return found

    def total(self, name: str) -> int:
        """The sum of one counter over the files (`lines`, `hits`, `imported`, ...)."""
        return sum(int(getattr(f, name)) for f in self.files)

    def skipped(self) -> dict[Reason, int]:
        """Skipped lines by reason, over every file."""
        return {r: sum(f.skipped[r] for f in self.files) for r in REASONS}

    @property
    def unparsable(self) -> int:
        """Lines that were not lines of their file's format (or had no valid time)."""
        return sum(f.skipped[Reason.UNPARSABLE] for f in self.files)

    @property
    def errors(self) -> list[FileSummary]:
        """Files that stopped early on bad data."""
        return [f for f in self.files if f.error]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able totals and files."""
        return {
            "lines": self.total("lines"),
            "hits": self.total("hits"),
            "imported": self.total("imported"),
            "duplicates": self.total("duplicates"),
            "downloads": self.total("downloads"),
            "skipped": {str(k): v for k, v in self.skipped().items()},
            "files": [f.as_dict() for f in self.files],
        }
