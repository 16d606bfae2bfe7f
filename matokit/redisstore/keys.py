"""Every Redis key of a profile: `{namespace}:{part}...`, the namespace carrying a hash tag.

`Settings.redis_namespace` is `matokit:{PROFILE}` (the prefix is `redis_prefix`): all keys of a
profile share the `{PROFILE}` hash tag, so they live in one Redis Cluster slot and one Lua script
or MULTI/EXEC may touch several of them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """The key names under one profile's namespace."""

    namespace: str

    def key(self, *parts: str) -> str:
        """`namespace:part:part...`."""
        return ":".join((self.namespace, *parts))

    def journal(self, part: str) -> str:
        """A key of the retry journal."""
        return self.key("journal", part)

    @property
    def token_memory(self) -> str:
        """The hash of the rejected token and when (never the token itself)."""
        return self.key("token", "rejected")

    @property
    def pause(self) -> str:
        """Matomo's Retry-After "not before", for every host of the profile."""
        return self.key("pause")

    @property
    def flush_lock(self) -> str:
        """Who holds the profile's flush lock (with an expiry)."""
        return self.key("flush", "lock")

    @property
    def cache(self) -> str:
        """The prefix of the report cache's keys."""
        return self.key("cache")
