"""Lockout-safe authentication: remember tokens Matomo rejected, per profile.

Matomo blocks a client IP from its whole API after 20 invalid tokens within an hour, and only
an admin on the server can lift the block. A cron job with a stale token gets there in 20
minutes. So after Matomo says "Unable to authenticate", the same token is not sent again for a
cool-down; every attempt in between fails locally with `TokenCoolDownError`, which says when
the token was rejected and how to fix it. A changed token is sent at once.

The memory file holds a salted SHA-256 of the token, never the token, plus the time and
Matomo's (redacted) message. Writes are atomic, so separate processes (cron runs overlapping)
share the memory safely; a damaged file is treated as empty and replaced.

With `redis_url` set, the memory is shared by every host of the profile
(`matokit.redisstore.tokens.RedisTokenMemory`, which also lets only one process at a time send
a token not yet known to be good); `matokit.shared.token_memory_for` picks the one the settings
ask for. Both satisfy `RejectedTokens`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from matokit.errors import StorageError, TokenCoolDownError
from matokit.private_files import make_private_dir, write_atomic
from matokit.redact import redact
from matokit.times import utc_text

DEFAULT_COOLDOWN = 600.0
_FORMAT = 1
_MAX_ENTRIES = 8
_MAX_MESSAGE = 300


class RejectedTokens(Protocol):
    """The rejected-token memory the client consults: a file per host, or Redis per fleet."""

    def check(self, token: str, *, tracking: bool = False) -> None:
        """Raise `TokenCoolDownError` if `token` was rejected within the cool-down."""
        ...

    def record_rejection(self, token: str, message: str) -> None:
        """Remember that Matomo rejected `token` now, with its message."""
        ...

    def record_acceptance(self, token: str, *, tracking: bool = False) -> None:
        """Matomo answered a request carrying `token` without refusing it."""
        ...

    def release(self, token: str) -> None:
        """A request carrying `token` got no verdict on it (network, proxy)."""
        ...

    def clear(self) -> None:
        """Forget every rejection."""
        ...


@dataclass(frozen=True)
class Rejection:
    """One remembered rejection: which token (as a salted hash), when, and Matomo's words."""

    token_hash: str
    rejected_at: float
    message: str


class TokenMemory:
    """Tokens Matomo rejected recently, stored in one small JSON file of the profile."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        cooldown: float = DEFAULT_COOLDOWN,
    ) -> None:
        self.path = Path(path)
        self.cooldown = cooldown
        self._clock = clock

    def check(self, token: str, *, tracking: bool = False) -> None:
        """Raise `TokenCoolDownError` if this token was rejected less than `cooldown` ago."""
        salt, entries = self._load()
        if salt is None:
            return
        now = self._clock()
        digest = _hash(salt, token)
        for entry in entries:
            if entry.token_hash == digest and self._active(entry, now):
                raise cool_down_error(entry, until=entry.rejected_at + self.cooldown)

    def record_rejection(self, token: str, message: str) -> None:
        """Remember that Matomo rejected `token` now, with its (redacted) `message`."""
        salt, entries = self._load()
        if salt is None:
            salt = secrets.token_hex(16)
        now = self._clock()
        digest = _hash(salt, token)
        kept = [e for e in entries if e.token_hash != digest and self._active(e, now)]
        text = redact(message, [token])[:_MAX_MESSAGE]
        kept.insert(0, Rejection(token_hash=digest, rejected_at=now, message=text))
        self._write(salt, kept[:_MAX_ENTRIES])

    def record_acceptance(self, token: str, *, tracking: bool = False) -> None:
        """Nothing to do on one host: only a rejection is remembered."""

    def release(self, token: str) -> None:
        """Nothing to do on one host: no other process waits for this one's outcome."""

    def clear(self) -> None:
        """Forget every rejection (e.g. after the user fixed the token)."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._unusable("remove", exc, "check the data directory's permissions") from exc

    def _active(self, entry: Rejection, now: float) -> bool:
        # A rejection "from the future" beyond the cool-down is a broken clock or a damaged
        # file: ignore it rather than block the token indefinitely.
        return now - self.cooldown < entry.rejected_at <= now + self.cooldown

    def _load(self) -> tuple[str | None, list[Rejection]]:
        try:
            raw = self.path.read_text(encoding="utf-8")
            data = json.loads(raw)
        except (OSError, ValueError):
            # Missing, unreadable or damaged: behave as if empty. The next rejection rewrites
            # the file whole.
            return None, []
        return _parse(data)

    def _write(self, salt: str, entries: list[Rejection]) -> None:
        payload = {
            "format": _FORMAT,
            "salt": salt,
            "rejections": [e.__dict__ for e in entries],
        }
        try:
            make_private_dir(self.path.parent)
            write_atomic(self.path, json.dumps(payload, indent=1) + "\n")
        except OSError as exc:
            hint = "check that the profile's data directory is writable"
            raise self._unusable("write", exc, hint) from exc

    def _unusable(self, action: str, exc: OSError, hint: str) -> StorageError:
        return StorageError(
            f"Cannot {action} the token memory file: {exc.strerror or exc}.",
            path=str(self.path),
            hint=hint,
        )


def _parse(data: Any) -> tuple[str | None, list[Rejection]]:
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        return None, []
    salt = data.get("salt")
    rows = data.get("rejections")
    if not isinstance(salt, str) or not salt or not isinstance(rows, list):
        return None, []
    entries = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        token_hash, at, message = row.get("token_hash"), row.get("rejected_at"), row.get("message")
        if (
            not isinstance(token_hash, str)
            or isinstance(at, bool)
            or not isinstance(at, int | float)
        ):
            continue
        entries.append(
            Rejection(token_hash, float(at), message if isinstance(message, str) else "")
        )
    return salt, entries


def _hash(salt: str, token: str) -> str:
    return hashlib.sha256((salt + token).encode("utf-8")).hexdigest()


def cool_down_error(entry: Rejection, *, until: float) -> TokenCoolDownError:
    """The error for a request not sent because `entry` rejected its token until `until`."""
    said = f' ("{entry.message}")' if entry.message else ""
    return TokenCoolDownError(
        f"Matomo rejected this token at {utc_text(entry.rejected_at)}{said}; MatoKit will not send "
        f"it again until {utc_text(until)}, so that repeated failures do not get this host locked "
        "out of Matomo.",
        rejected_at=entry.rejected_at,
        until=until,
        hint=(
            "Create a new token in Matomo (Administration > Personal > Security > Auth tokens) "
            "and update MATOMO_TOKEN or the token file; a changed token is used at once."
        ),
    )
