"""Reading logs: plain, gzip or bzip2 (told by their first bytes), from a file or stdin, as lines.

Lines end at `\\n`, `\\r\\n` or a lone `\\r` (as Matomo's importer reads them, in text mode). A
line longer than MAX_LINE is reported as TOO_LONG without being held in memory. An unterminated
last line of a plain file is left unread (the server may be writing it: the next run reads it
whole); a compressed file or stdin ends where it ends. A compressed file cut short is noticed
after its last whole line (`Source.truncated`). Offsets count decompressed bytes, so a
checkpoint of a file still means the same place once the file is compressed.
"""

from __future__ import annotations

import bz2
import os
import re
import zlib
from collections.abc import Generator, Iterator
from typing import IO, Final, Protocol

MAX_LINE: Final = 64 * 1024
BLOCK: Final = 256 * 1024
HEAD: Final = 64 * 1024  # what format detection and the file's identity look at
BINARY_PROBE: Final = 8192
TOO_LONG: Final = b"\x00too long\x00"  # stands for a line over MAX_LINE (never a real line)
_LINE_END = re.compile(rb"\r\n|\r|\n")


class BinaryFileError(ValueError):
    """The data holds NUL bytes: not a text log (a binary file, or UTF-16)."""


class _Decoder(Protocol):
    def decompress(self, data: bytes) -> bytes: ...

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...


def _new_decoder(kind: str) -> _Decoder:
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    return bz2.BZ2Decompressor()


def compression_of(head: bytes) -> str | None:
    """ "gzip", "bzip2" or None (plain), from a file's first bytes."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh") and len(head) > 3 and head[3:4].isdigit():
        return "bzip2"
    return None


class Source:
    """A log's decompressed bytes, from a binary stream (file or pipe), with its position."""

    def __init__(self, raw: IO[bytes], *, name: str, final: bool) -> None:
        self.raw = raw
        self.name = name
        self.final = final  # its end is the end of the data (not a file still growing)
        first = raw.read(BLOCK)
        self.compression = compression_of(first)
        self._decoder = None if self.compression is None else _new_decoder(self.compression)
        self._raw_done = not first
        self.truncated = False  # a compressed stream that ended before its end marker
        self.position = 0  # decompressed bytes handed out by read()
        self.raw_read = len(first)  # bytes of the file read so far (progress)
        if self._decoder is not None:
            self.final = True
        self._pending = self._decode(first) if self._decoder is not None else first
        # The last two pieces handed out, (start offset, bytes): what `before()` looks at.
        self._recent: list[tuple[int, bytes]] = []

    def _decode(self, data: bytes) -> bytes:
        decoder = self._decoder
        assert decoder is not None and self.compression is not None
        out = [decoder.decompress(data)]
        while decoder.eof and decoder.unused_data:  # several members (cat a.gz b.gz)
            rest = decoder.unused_data
            decoder = self._decoder = _new_decoder(self.compression)
            out.append(decoder.decompress(rest))
        return b"".join(out)

    def _next(self) -> bytes:
        """The next decompressed bytes, not yet counted as handed out; b"" at the end."""
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        while True:
            block = self.raw.read(BLOCK)
            if not block:
                if self._decoder is not None and not self._raw_done:
                    self._raw_done = True
                    self.truncated = not self._decoder.eof
                return b""
            self.raw_read += len(block)
            data = self._decode(block) if self._decoder is not None else block
            if data:
                return data

    def read(self) -> bytes:
        """The next decompressed bytes available now; b"" at the (current) end."""
        data = self._next()
        if data:
            self._recent = [*self._recent[-1:], (self.position, data)]
            self.position += len(data)
        return data

    def head(self) -> bytes:
        """The first HEAD decompressed bytes (without consuming them)."""
        if self.position:
            raise RuntimeError("head() after reading")
        while len(self._pending) < HEAD:
            block = self.raw.read(BLOCK)
            if not block:
                break
            self.raw_read += len(block)
            self._pending += self._decode(block) if self._decoder is not None else block
        return self._pending[:HEAD]

    def before(self, end: int, length: int) -> bytes | None:
        """The `length` decompressed bytes before offset `end` (fewer at the start), or None
        when they are no longer at hand."""
        start = max(0, end - length)
        if self._decoder is None and _seekable(self.raw):
            try:
                return os.pread(self.raw.fileno(), end - start, start)
            except (OSError, ValueError):
                return None
        if not self._recent or self._recent[0][0] > start:
            return None
        base = self._recent[0][0]
        data = b"".join(piece for _, piece in self._recent)
        if base + len(data) < end:
            return None
        return data[start - base : end - base]

    def skip_to(self, offset: int, *, keep: int = 0) -> tuple[int, bytes]:
        """Move to decompressed `offset` (seek when plain, else decompress and drop); where it
        ended up (less than `offset` when the data is shorter) and the `keep` bytes before."""
        if self.position:
            raise RuntimeError("skip_to() after reading")
        if self._decoder is None and _seekable(self.raw):
            size = os.fstat(self.raw.fileno()).st_size
            target = min(offset, size)
            tail = self.before(target, keep) or b""
            self.raw.seek(target)
            self.raw_read = target
            self._pending = b""
            self.position = target
            self._recent = [(target - len(tail), tail)]
            return target, tail
        tail = b""
        while True:
            data = self._next()
            if not data:
                break
            if self.position + len(data) >= offset:
                cut = offset - self.position
                tail = (tail + data[:cut])[-keep:] if keep else b""
                self._pending = data[cut:]
                self.position = offset
                break
            tail = (tail + data)[-keep:] if keep else b""
            self.position += len(data)
        self._recent = [(self.position - len(tail), tail)]
        return self.position, tail


def _seekable(raw: IO[bytes]) -> bool:
    try:
        return raw.seekable()
    except (OSError, ValueError):
        return False


def check_text(head: bytes) -> None:
    """BinaryFileError when the first bytes of a log hold NUL bytes."""
    at = head.find(b"\x00", 0, BINARY_PROBE)
    if at >= 0:
        raise BinaryFileError(f"NUL byte at offset {at}: not a text log (binary, or UTF-16?)")


class LineReader:
    """Lines of a Source, with the line number and the offset just past each line.

    `lines()` yields what is available now and may be called again once the file has grown
    (`--follow`); `offset` and `line` always describe the last line yielded.
    """

    def __init__(self, source: Source, *, offset: int = 0, line: int = 0) -> None:
        self.source = source
        self.offset = offset  # decompressed bytes up to the end of the last line yielded
        self.line = line
        self._rest = b""  # an unterminated line so far
        self._skipping = -1  # > -1: inside a too-long line, this many bytes of it dropped

    def lines(self) -> Iterator[bytes]:
        """Each complete line (without its end), or TOO_LONG for one over MAX_LINE."""
        source = self.source
        while True:
            block = source.read()
            if not block:
                break
            if self._skipping >= 0:
                block = yield from self._skip_long(block)
                if not block:
                    continue
            data = self._rest + block if self._rest else block
            carriage = b"\r" in data
            if carriage and data.count(b"\r") != data.count(b"\r\n"):
                yield from self._split_carriage(data)
                continue
            # The common case, inline (a generator less per line): lines end at \n or \r\n.
            parts = data.split(b"\n")
            rest = parts.pop()
            offset, line = self.offset, self.line
            for part in parts:
                offset += len(part) + 1
                line += 1
                self.offset = offset
                self.line = line
                if carriage and part[-1:] == b"\r":
                    part = part[:-1]
                yield part if len(part) <= MAX_LINE else TOO_LONG
            self._keep(rest)
        if source.final and not source.truncated:
            if self._skipping >= 0:
                self.offset += self._skipping
                self._skipping = -1
                self.line += 1
                yield TOO_LONG
            elif self._rest:
                rest, self._rest = self._rest, b""
                self.offset += len(rest)
                self.line += 1
                yield rest if len(rest) <= MAX_LINE else TOO_LONG

    def _skip_long(self, block: bytes) -> Generator[bytes, None, bytes]:
        """Drop the rest of a too-long line; what follows its end is returned."""
        match = _LINE_END.search(block)
        if match is None or (match.group() == b"\r" and match.end() == len(block)):
            self._skipping += len(block)
            return b""
        self.offset += self._skipping + match.end()
        self._skipping = -1
        self.line += 1
        yield TOO_LONG
        return block[match.end() :]

    def _split_carriage(self, data: bytes) -> Iterator[bytes]:
        """Lines ended by lone `\\r` too (old Mac, some tools); slower, rare."""
        keep_cr = data.endswith(b"\r")  # maybe the first half of a \r\n
        body = data[:-1] if keep_cr else data
        base, start = self.offset, 0
        for match in _LINE_END.finditer(body):
            part = body[start : match.start()]
            start = match.end()
            self.offset = base + start
            self.line += 1
            yield part if len(part) <= MAX_LINE else TOO_LONG
        self._keep(body[start:] + (b"\r" if keep_cr else b""))

    def _keep(self, rest: bytes) -> None:
        if len(rest) > MAX_LINE:
            self._skipping = len(rest)
            self._rest = b""
        else:
            self._rest = rest
