"""The rejected-token memory on Redis: one cool-down for every host of the profile.

The same contract as `matokit.tokenmemory.TokenMemory` (a rejected token is not sent again for
the cool-down; a changed token is sent at once; a salted SHA-256 and Matomo's redacted words
are kept, never the token), shared by every process on every host through one hash,
`{namespace}:token:rejected`.

Sharing the memory is not enough for a fleet: 25 CI runners starting together with a stale
token would each send it before any of them learnt it was rejected, and 20 failed logins lock
the NAT address out of Matomo. So a token is sent by one process at a time until Matomo's API
has accepted it: the first `check` takes a short *probe* claim (`PROBE_SECONDS`); the others
wait for its outcome. Rejected: they fail at once with `TokenCoolDownError`. Accepted: they go,
and for `TRUST_SECONDS` after an acceptance every process sends it without waiting (each
acceptance seen is refreshed at half that age). Neither (Matomo unreachable, a proxy's 503):
the claim is released and the next process tries. The tracker authenticates lazily (a recent
hit is stored whatever the token), so its answers only let other *tracking* requests through.

Fields of the hash: `salt`; per token digest `r:` (rejected at), `m:` (Matomo's message), `a:`
(an API answer accepted it at), `t:` (the tracker answered at), `p:`/`o:` (probe until, by
whom). Every change is one Lua script; a script run with another salt than the hash's gets the
hash's salt back and is run again. The hash expires when untouched for twice the longest window.

When Redis fails, the memory falls back to the profile's file (`matokit.redisstore.fallback`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from matokit.redact import redact
from matokit.redisstore.connection import RedisTarget, redis_errors
from matokit.redisstore.fallback import Fallback
from matokit.tokenmemory import DEFAULT_COOLDOWN, Rejection, TokenMemory, cool_down_error

if TYPE_CHECKING:
    from redis.commands.core import Script

# How long the first sender of a token not known to be good keeps the others waiting for its
# outcome at most (the request's own time-outs are shorter: see `matokit.tokenmemory`).
PROBE_SECONDS: Final = 30.0
# A probe said to end later than this from now is a broken clock, not a process at work.
MAX_PROBE_SECONDS: Final = 600.0
# How long after Matomo's API accepted a token every process sends it without a probe.
TRUST_SECONDS: Final = 60.0
POLL_SECONDS: Final = 0.05
_MAX_MESSAGE = 300

# The salt prelude of every script: KEYS[1] the hash, ARGV[1] the salt the caller hashed with.
_SALT = """
local h = KEYS[1]
local salt = redis.call('HGET', h, 'salt')
if not salt then
  redis.call('HSET', h, 'salt', ARGV[1])
elseif salt ~= ARGV[1] then
  return {'salt', salt}
end
local d = ARGV[2]
"""

# ARGV: salt, digest, now, cooldown, trust, probe, owner, tracking ('1'/'0'), probe end, ttl ms,
# the longest probe believed (a probe ending later is a broken clock: ignored)
_CHECK = (
    _SALT
    + """
local now, cool, trust, probe = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]),
  tonumber(ARGV[6])
local f = redis.call('HMGET', h, 'r:'..d, 'm:'..d, 'a:'..d, 't:'..d, 'p:'..d, 'o:'..d)
local r = tonumber(f[1])
if r and now - cool < r and r <= now + cool then
  return {'rejected', f[1], f[2] or ''}
end
local a = tonumber(f[3])
if a and now - trust < a and a <= now + trust then
  return {'ok', 'a', f[3]}
end
local t = tonumber(f[4])
if ARGV[8] == '1' and t and now - trust < t and t <= now + trust then
  return {'ok', 't', f[4]}
end
local p = tonumber(f[5])
if p and f[6] ~= ARGV[7] and now < p and p <= now + tonumber(ARGV[11]) then
  return {'wait', f[5]}
end
redis.call('HSET', h, 'p:'..d, ARGV[9], 'o:'..d, ARGV[7])
redis.call('PEXPIRE', h, ARGV[10])
return {'probe'}
"""
)

# ARGV: salt, digest, now, message, ttl ms
_REJECT = (
    _SALT
    + """
redis.call('HSET', h, 'r:'..d, ARGV[3], 'm:'..d, ARGV[4])
redis.call('HDEL', h, 'a:'..d, 't:'..d, 'p:'..d, 'o:'..d)
redis.call('PEXPIRE', h, ARGV[5])
return {'done'}
"""
)

# ARGV: salt, digest, now, field ('a' or 't'), owner, ttl ms
_ACCEPT = (
    _SALT
    + """
redis.call('HSET', h, ARGV[4]..':'..d, ARGV[3])
if redis.call('HGET', h, 'o:'..d) == ARGV[5] then
  redis.call('HDEL', h, 'p:'..d, 'o:'..d)
end
redis.call('PEXPIRE', h, ARGV[6])
return {'done'}
"""
)

# ARGV: salt, digest, owner
_RELEASE = (
    _SALT
    + """
if redis.call('HGET', h, 'o:'..d) == ARGV[3] then
  redis.call('HDEL', h, 'p:'..d, 'o:'..d)
end
return {'done'}
"""
)


class RedisTokenMemory:
    """Tokens Matomo rejected recently, shared by every host of the profile through Redis."""

    def __init__(
        self,
        target: RedisTarget,
        *,
        fallback: TokenMemory,
        clock: Callable[[], float] = time.time,
        cooldown: float = DEFAULT_COOLDOWN,
        probe: float = PROBE_SECONDS,
        trust: float = TRUST_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.target = target
        self.key = target.keys.token_memory
        self.fallback = fallback
        self.cooldown = cooldown
        self.probe = probe
        self.trust = trust
        self._clock = clock
        self._sleep = sleep
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"
        self._salt: str | None = None
        self._probing: set[str] = set()  # digests this instance is the first sender of
        self._seen: dict[tuple[str, str], float] = {}  # (digest, field) -> acceptance seen
        self._scripts: dict[str, Script] = {}
        self._redis = Fallback("the shared token memory", target.url)

    @property
    def location(self) -> str:
        """Where the memory lives, as shown to people."""
        return f"{self.target.display} key {self.key}"

    def check(self, token: str, *, tracking: bool = False) -> None:
        """Raise `TokenCoolDownError` if this token was rejected less than `cooldown` ago.

        While another process is the first to send a token not known to be good, waits for its
        outcome (at most `probe` seconds). `tracking`: a tracking request (see the module).
        """
        self._redis.run(
            lambda: self._check(token, tracking),
            lambda: self.fallback.check(token, tracking=tracking),
        )

    def record_rejection(self, token: str, message: str) -> None:
        """Remember for every host that Matomo rejected `token` now, with its `message`."""
        text = redact(message, [token])[:_MAX_MESSAGE]

        def on_redis() -> None:
            self._run("reject", _REJECT, token, repr(self._clock()), text, self._ttl())
            self._probing.discard(self._digest(token))

        self._redis.run(on_redis, lambda: self.fallback.record_rejection(token, message))

    def record_acceptance(self, token: str, *, tracking: bool = False) -> None:
        """Matomo answered a request that carried `token` without refusing it."""
        self._redis.run(lambda: self._accept(token, tracking), lambda: None)

    def release(self, token: str) -> None:
        """The request that carried `token` got no verdict on it: let the next process try."""
        digest = self._digest(token)
        if digest not in self._probing:
            return
        self._probing.discard(digest)
        self._redis.run(lambda: self._run("release", _RELEASE, token, self._owner), lambda: None)

    def clear(self) -> None:
        """Forget every rejection (on Redis and in this host's file)."""
        self.fallback.clear()
        with redis_errors(self.target, "clear the token memory"):
            self.target.client().delete(self.key)

    # -- Redis

    def _check(self, token: str, tracking: bool) -> None:
        deadline: float | None = None
        while True:
            now = self._clock()
            answer = self._run(
                "check",
                _CHECK,
                token,
                repr(now),
                repr(self.cooldown),
                repr(self.trust),
                repr(self.probe),
                self._owner,
                "1" if tracking else "0",
                repr(now + self.probe),
                self._ttl(),
                repr(MAX_PROBE_SECONDS),
            )
            verdict = answer[0]
            if verdict == "rejected":
                at = float(answer[1])
                entry = Rejection(self._digest(token), at, answer[2])
                raise cool_down_error(entry, until=at + self.cooldown)
            if verdict == "ok":
                self._seen[(self._digest(token), answer[1])] = float(answer[2])
                return
            if verdict == "probe":
                self._probing.add(self._digest(token))
                return
            # Another process is sending it first: wait for its outcome, never past one probe.
            deadline = deadline if deadline is not None else time.monotonic() + self.probe
            if time.monotonic() >= deadline:
                return
            self._sleep(POLL_SECONDS)

    def _accept(self, token: str, tracking: bool) -> None:
        digest = self._digest(token)
        field = "t" if tracking else "a"
        now = self._clock()
        if digest not in self._probing:
            # Refresh what every process relies on only when it is getting old.
            fresh = [self._seen.get((digest, "a"))]
            if tracking:
                fresh.append(self._seen.get((digest, "t")))
            if any(at is not None and now - at < self.trust / 2 for at in fresh):
                return
        self._run("accept", _ACCEPT, token, repr(now), field, self._owner, self._ttl())
        self._seen[(digest, field)] = now
        self._probing.discard(digest)

    def _run(self, name: str, source: str, token: str, *args: str) -> list[str]:
        """Run script `name` for `token` (after salt and digest); again with the hash's salt
        when it was created with another."""
        with redis_errors(self.target, "use the shared token memory"):
            script = self._scripts.get(name)
            if script is None:
                script = self._scripts[name] = self.target.client().register_script(source)
            for _ in range(3):
                salt = self._current_salt()
                raw: Any = script(keys=[self.key], args=[salt, _hash(salt, token), *args])
                answer = [_text(part) for part in raw]
                if answer[0] != "salt":
                    return answer
                self._salt = answer[1]
        raise AssertionError("the token memory's salt keeps changing")  # pragma: no cover

    def _current_salt(self) -> str:
        if self._salt is None:
            self._salt = secrets.token_hex(16)  # proposed; the hash's own wins if it has one
        return self._salt

    def _digest(self, token: str) -> str:
        return _hash(self._current_salt(), token)

    def _ttl(self) -> str:
        longest = max(self.cooldown, self.trust, self.probe)
        return str(int(2 * longest * 1000) + 60_000)


def _hash(salt: str, token: str) -> str:
    return hashlib.sha256((salt + token).encode("utf-8")).hexdigest()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
