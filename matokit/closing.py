"""`with thing:` for MatoKit's resources: leaving the block calls `close()`."""

from __future__ import annotations

from typing import Self


class Closing:
    """A resource that `close()`s when its `with` block ends (journal, client, delivery)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
