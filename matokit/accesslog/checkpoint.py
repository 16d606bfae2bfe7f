"""Per-file checkpoints: where a re-run may start instead of re-reading a whole file.

A file is known by its device and inode (a log renamed by logrotate keeps them) and by a hash
of its first bytes (kept when it is compressed: offsets count decompressed bytes). A checkpoint
is used only when the file still starts with the same bytes and, for a plain file, is at least
as long as the checkpoint's offset; otherwise (truncated, replaced, rewritten) the file is read
from the start. Correctness never depends on it: every line's key is checked anyway.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Final

from matokit.accesslog.state import AccessLogState, Checkpoint

IDENTITY_BYTES: Final = 4096


@dataclass(frozen=True)
class FileIdentity:
    """What identifies a log file across runs."""

    device: int
    inode: int
    size: int | None  # None for compressed data and pipes (only known once read)
    head: bytes  # its first IDENTITY_BYTES decompressed bytes (fewer when it is shorter)

    @classmethod
    def of(cls, fd: int, head: bytes, *, compressed: bool) -> FileIdentity:
        """The identity of the open file `fd` whose (decompressed) data starts with `head`."""
        info = os.fstat(fd)
        return cls(
            device=info.st_dev,
            inode=info.st_ino,
            size=None if compressed else info.st_size,
            head=head[:IDENTITY_BYTES],
        )


def head_hash(data: bytes) -> str:
    """The hash that stands for a file's first bytes."""
    return hashlib.sha256(data).hexdigest()


def _fits(checkpoint: Checkpoint, identity: FileIdentity) -> bool:
    if checkpoint.head_len <= 0 or checkpoint.head_len > len(identity.head):
        return False
    if head_hash(identity.head[: checkpoint.head_len]) != checkpoint.head:
        return False
    return identity.size is None or checkpoint.offset <= identity.size


def find(state: AccessLogState, identity: FileIdentity) -> Checkpoint | None:
    """The checkpoint to resume `identity` from, or None (read it from the start).

    The file's own (same device and inode) comes first; else the furthest checkpoint of a file
    with the same first bytes (the same log, renamed across filesystems or compressed).
    """
    if not identity.head:
        return None
    for checkpoint in state.checkpoints(device=identity.device, inode=identity.inode):
        if _fits(checkpoint, identity):
            return checkpoint
    for length in sorted(state.head_lengths(), reverse=True):
        if length > len(identity.head):
            continue
        digest = head_hash(identity.head[:length])
        for checkpoint in state.checkpoints_by_head(length, digest):
            if _fits(checkpoint, identity):
                return checkpoint
    return None


def at(
    identity: FileIdentity,
    *,
    offset: int,
    line: int,
    window: str,
    format_name: str,
    format_state: str,
    path: str,
    previous: Checkpoint | None,
) -> Checkpoint:
    """The checkpoint of `identity` after `line` lines (`offset` bytes); it replaces
    `previous` when that was this very file's."""
    own = previous is not None and (previous.device, previous.inode) == (
        identity.device,
        identity.inode,
    )
    return Checkpoint(
        device=identity.device,
        inode=identity.inode,
        head_len=len(identity.head),
        head=head_hash(identity.head),
        offset=offset,
        line=line,
        window=window,
        format=format_name,
        format_state=format_state,
        path=path,
        id=previous.id if own and previous is not None else None,
    )
