"""Reading logs: line ends, long lines, unterminated last lines, gzip and bzip2 (whole, in
several members, cut short), binary data; and occurrence-numbered keys."""

from __future__ import annotations

import bz2
import gzip
import io

import pytest

from matokit.accesslog.keys import WINDOW, Occurrences, line_digest, line_key
from matokit.accesslog.reader import (
    BLOCK,
    MAX_LINE,
    TOO_LONG,
    BinaryFileError,
    LineReader,
    Source,
    check_text,
)


def read(data: bytes, *, final: bool = True, offset: int = 0) -> list[tuple[bytes, int, int]]:
    """(line, line number, offset after it) for every line of `data`."""
    source = Source(io.BytesIO(data), name="t", final=final)
    if offset:
        source.skip_to(offset)
    reader = LineReader(source, offset=offset)
    return [(line, reader.line, reader.offset) for line in reader.lines()]


def test_lines_end_at_lf_crlf_and_a_lone_cr() -> None:
    data = b"a\nb\r\nc\rd\n"
    assert read(data) == [(b"a", 1, 2), (b"b", 2, 5), (b"c", 3, 7), (b"d", 4, 9)]


def test_crlf_split_across_blocks_is_one_line_end() -> None:
    full, rest = divmod(BLOCK - 1, 100)
    first = b"x" * 99 + b"\n"
    data = first * full + b"y" * rest + b"\r" + b"\nnext\n"  # the \r ends the first block
    lines = read(data)
    assert len(lines) == full + 2
    assert lines[-2] == (b"y" * rest, full + 1, BLOCK + 1)
    assert lines[-1] == (b"next", full + 2, BLOCK + 6)


def test_an_unterminated_last_line_waits_unless_the_data_is_final() -> None:
    assert read(b"a\npartial", final=False) == [(b"a", 1, 2)]
    assert read(b"a\npartial", final=True) == [(b"a", 1, 2), (b"partial", 2, 9)]


def test_a_growing_file_yields_the_rest_once_it_is_written() -> None:
    stream = io.BytesIO(b"one\ntw")
    reader = LineReader(Source(stream, name="t", final=False))
    assert list(reader.lines()) == [b"one"]
    stream.seek(0, io.SEEK_END)
    stream.write(b"o\nthree\n")
    stream.seek(6)
    assert list(reader.lines()) == [b"two", b"three"]
    assert (reader.line, reader.offset) == (3, 14)


def test_a_line_over_the_cap_is_reported_not_held() -> None:
    huge = b"y" * (MAX_LINE * 16)  # 1 MiB, over several blocks
    lines = read(b"first\n" + huge + b"\nlast\n")
    assert [text if text is not TOO_LONG else "TOO_LONG" for text, _, _ in lines] == [
        b"first",
        "TOO_LONG",
        b"last",
    ]
    assert lines[1][1:] == (2, 6 + len(huge) + 1)
    assert lines[2][2] == 6 + len(huge) + 1 + 5


def test_gzip_in_several_members_reads_as_one_log() -> None:
    data = gzip.compress(b"a\nb\n") + gzip.compress(b"c\n")
    assert [text for text, _, _ in read(data, final=False)] == [b"a", b"b", b"c"]


def test_a_gzip_file_cut_short_gives_its_whole_lines_then_says_so() -> None:
    body = b"".join(b"line %d with some text to compress\n" % i for i in range(5000))
    packed = gzip.compress(body)
    source = Source(io.BytesIO(packed[: len(packed) // 2]), name="t.gz", final=True)
    reader = LineReader(source)
    lines = list(reader.lines())
    assert source.truncated
    assert 0 < len(lines) < 5000
    assert lines == [b"line %d with some text to compress" % i for i in range(len(lines))]


def test_bzip2_is_read_and_offsets_count_decompressed_bytes() -> None:
    data = bz2.compress(b"a\nbb\n")
    assert read(data) == [(b"a", 1, 2), (b"bb", 2, 5)]
    assert read(data, offset=2) == [(b"bb", 1, 5)]


def test_skipping_to_an_offset_in_compressed_data() -> None:
    body = b"".join(b"%05d\n" % i for i in range(50_000))
    lines = read(gzip.compress(body), offset=6 * 40_000)
    assert lines[0][0] == b"40000" and len(lines) == 10_000


def test_nul_bytes_mean_no_text_log() -> None:
    with pytest.raises(BinaryFileError, match="NUL byte at offset 2"):
        check_text(b"ab\x00cd")
    check_text(b"plain text\n")


# --- keys ----------------------------------------------------------------------------------------


def test_identical_lines_in_one_second_are_two_hits_with_two_keys() -> None:
    counts = Occurrences()
    digest = line_digest(b'1.2.3.4 - - [20/Nov/2026:09:15:02 +0100] "GET / HTTP/1.1" 200 5')
    keys = [line_key(1, digest, counts.next(digest, 1000)) for _ in range(2)]
    assert keys[0] != keys[1]
    assert all(len(k) == 32 and int(k, 16) >= 0 for k in keys)


def test_keys_depend_on_site_and_content() -> None:
    a, b = line_digest(b"line a"), line_digest(b"line b")
    assert line_key(1, a, 0) != line_key(2, a, 0)
    assert line_key(1, a, 0) != line_key(1, b, 0)
    assert line_key(1, a, 0) == line_key(1, line_digest(b"line a"), 0)


def test_counts_resumed_from_a_checkpoint_number_lines_as_a_whole_run() -> None:
    lines = [(line_digest(b"L%d" % (i % 7)), 1000 + i // 5) for i in range(200)]
    whole = Occurrences()
    expected = [whole.next(d, t) for d, t in lines]
    first = Occurrences()
    got = [first.next(d, t) for d, t in lines[:123]]
    resumed = Occurrences.load(first.dump())
    got += [resumed.next(d, t) for d, t in lines[123:]]
    assert got == expected


def test_counts_forget_lines_older_than_the_window() -> None:
    counts = Occurrences()
    digest = line_digest(b"same")
    assert counts.next(digest, 1000) == 0
    assert counts.next(digest, 1000) == 1
    counts.next(line_digest(b"later"), 1000 + WINDOW + 1)
    assert counts.next(digest, 1000) == 0  # an identical line that far out of order
    assert Occurrences.load("not json").next(digest, 5) == 0
