"""The one byte-count formatter (matokit/sizes.py): binary units, one decimal above bytes."""

from __future__ import annotations

import pytest

from matokit.sizes import byte_text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (1024**2, "1.0 MiB"),
        (5 * 1024**3 // 2, "2.5 GiB"),
        (3 * 1024**4, "3.0 TiB"),
        (2048 * 1024**4, "2048.0 TiB"),
    ],
)
def test_byte_text(size: int, text: str) -> None:
    assert byte_text(size) == text
