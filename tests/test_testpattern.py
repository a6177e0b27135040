"""The test pattern's bar code: what every media test reads to know which frame arrived."""
from __future__ import annotations

import numpy as np
import pytest

from sora_ffi import testpattern

BLOCK = testpattern.BLOCK


def test_code_reads_back_at_sent_and_half_size():
    img = testpattern.make_frame(1234, 0xDEADBEEF, 640, 360)
    assert testpattern.read_code(img) == (1234, 0xDEADBEEF)
    half = img[::2, ::2].copy()
    assert testpattern.read_code(half, sent_width=640) == (1234, 0xDEADBEEF)


@pytest.mark.parametrize("bit", [0, 5, 15, 16, 40, 47, 48, 63])
def test_one_stale_block_makes_the_code_unreadable_not_wrong(bit):
    # A real-time encoder may keep one block of the previous frame: without the CRC that
    # read as another index (a frame "out of order").
    img = testpattern.make_frame(44, 990332686, 640, 360)
    r, c = divmod(bit, testpattern._ROW)
    cell = img[r * BLOCK:(r + 1) * BLOCK, c * BLOCK:(c + 1) * BLOCK]
    cell[...] = 255 - cell
    assert testpattern.read_code(img) is None


def test_blank_picture_is_not_a_code():
    assert testpattern.read_code(np.zeros((360, 640, 3), np.uint8)) is None
    assert testpattern.read_code(np.full((360, 640, 3), 255, np.uint8)) is None


def test_grey_cells_are_not_a_code():
    img = testpattern.make_frame(7, 1000, 640, 360)
    img[:BLOCK, :BLOCK] = 128
    assert testpattern.read_code(img) is None
