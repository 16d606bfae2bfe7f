"""Per-file checkpoints: where a re-run may start instead of re-reading a whole file.

A file is known by its device and inode (a log renamed by logrotate keeps them) and by a hash
of its first bytes (kept when it is compressed: offsets count decompressed bytes). A checkpoint
is used only when the file still starts with the same 4 KiB, is at least as long as the
checkpoint's offset, and has the same 4 KiB just before that offset; otherwise (truncated,
replaced, rewritten, another file that merely starts alike) it is read from the start. A
compressed file read to its end and unchanged since (same inode, size and mtime) is not read
again. Correctness never depends on checkpoints: every line's key is checked anyway.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from matokit.accesslog.state import AccessLogState, Checkpoint

IDENTITY_BYTES: Final = 4096
TAIL_BYTES: Final = 4096

ReadBefore = Callable[[int, int], "bytes | None"]


@dataclass(frozen=True)
class FileIdentity:
    """What identifies a log file across runs."""

    device: int
    inode: int
    size: int | None  # of its data; None when compressed (only known once read)
    head: bytes  # its first IDENTITY_BYTES decompressed bytes (fewer when it is shorter)
    raw_size: int = 0  # on disk
    mtime_ns: int = 0

    @property
    def compressed(self) -> bool:
        """Whether the file holds compressed data."""
        return self.size is None

    @classmethod
    def of(cls, fd: int, head: bytes, *, compressed: bool) -> FileIdentity:
        """The identity of the open file `fd` whose (decompressed) data starts with `head`."""
        info = os.fstat(fd)
        return cls(
            device=info.st_dev,
            inode=info.st_ino,
            size=None if compressed else info.st_size,
            head=head[:IDENTITY_BYTES],
            raw_size=info.st_size,
            mtime_ns=info.st_mtime_ns,
        )


def head_hash(data: bytes) -> str:
    """The hash that stands for a file's first bytes."""
    return hashlib.sha256(data).hexdigest()


def _fits(checkpoint: Checkpoint, identity: FileIdentity, before: ReadBefore | None) -> bool:
    if checkpoint.head_len <= 0 or checkpoint.head_len > len(identity.head):
        return False
    if head_hash(identity.head[: checkpoint.head_len]) != checkpoint.head:
        return False
    if identity.size is None:
        return True  # compressed: its tail is checked while decompressing to the offset
    if checkpoint.offset > identity.size:
        return False
    return tail_fits(checkpoint, before(checkpoint.offset, checkpoint.tail_len) if before else None)


def tail_fits(checkpoint: Checkpoint, tail: bytes | None) -> bool:
    """Whether `tail` (the bytes before the checkpoint's offset in a file) are the ones the
    checkpoint saw (a checkpoint that saw none fits any)."""
    if checkpoint.tail_len == 0:
        return True
    return tail is not None and head_hash(tail[-checkpoint.tail_len :]) == checkpoint.tail


def unchanged(checkpoint: Checkpoint, identity: FileIdentity) -> bool:
    """A compressed file read to its end before, not touched since: nothing new in it."""
    return (
        identity.compressed
        and checkpoint.complete
        and (checkpoint.device, checkpoint.inode) == (identity.device, identity.inode)
        and (checkpoint.raw_size, checkpoint.mtime_ns) == (identity.raw_size, identity.mtime_ns)
    )


def find(
    state: AccessLogState, identity: FileIdentity, before: ReadBefore | None = None
) -> Checkpoint | None:
    """The checkpoint to resume `identity` from, or None (read it from the start).

    The file's own (same device and inode) comes first; else the furthest checkpoint of a file
    with the same first bytes (the same log, renamed across filesystems or compressed).
    `before(offset, n)` reads the n bytes before an offset of a plain file.
    """
    if not identity.head:
        return None
    for checkpoint in state.checkpoints(device=identity.device, inode=identity.inode):
        if _fits(checkpoint, identity, before):
            return checkpoint
    for length in sorted(state.head_lengths(), reverse=True):
        if length > len(identity.head):
            continue
        digest = head_hash(identity.head[:length])
        for checkpoint in state.checkpoints_by_head(length, digest):
            if _fits(checkpoint, identity, before):
                return checkpoint
    return None


def at(
    identity: FileIdentity,
    *,
    offset: int,
    line: int,
    tail: bytes | None,
    window: str,
    format_name: str,
    format_state: str,
    path: str,
    previous: Checkpoint | None,
    complete: bool = False,
) -> Checkpoint:
    """The checkpoint of `identity` after `line` lines (`offset` bytes, preceded by `tail`);
    it replaces `previous` when that was this very file's."""
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
        tail_len=len(tail) if tail is not None else 0,
        tail=head_hash(tail) if tail is not None else "",
        raw_size=identity.raw_size,
        mtime_ns=identity.mtime_ns,
        complete=complete,
        window=window,
        format=format_name,
        format_state=format_state,
        path=path,
        id=previous.id if own and previous is not None else None,
    )
