"""An expression's face frames are stored in one file, in chunks of whole frames up to
`FRAME_CHUNK_BYTES`, and read back unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from mmhe.store import participant
from mmhe.store.participant import FRAME_CHUNK_BYTES, Inspection, _write_frames, frames_per_chunk
from mmhe.store.zarr_arrays import array_compressors


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((40, 240, 320, 3), 40),  # the demo's frames: 9.2 MB, one chunk
        ((300, 240, 320, 3), FRAME_CHUNK_BYTES // (240 * 320 * 3)),  # 72 frames per chunk
        ((50, 1088, 2048, 3), 2),  # MMHE's full frames, 6.7 MB each
        ((3, 4096, 4096, 3), 1),  # a frame above the limit still makes one chunk
        ((1, 10, 10, 1), 1),
    ],
)
def test_frames_per_chunk_is_whole_frames_under_the_byte_limit(shape, expected):
    assert frames_per_chunk(shape) == expected
    assert frames_per_chunk(shape) * np.prod(shape[1:]) <= max(
        FRAME_CHUNK_BYTES, np.prod(shape[1:])
    )


@pytest.mark.parametrize("limit", [FRAME_CHUNK_BYTES, 3 * 24 * 32 * 3])
def test_frames_round_trip_in_one_file(tmp_path, monkeypatch, limit):
    monkeypatch.setattr(participant, "FRAME_CHUNK_BYTES", limit)
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (10, 24, 32, 3), dtype=np.uint8)
    frames[4] = 0  # a black frame (the fill value) is stored and read like any other
    group = zarr.open_group(str(tmp_path / "a.zarr"), mode="w").create_group("e")
    found = Inspection("sub-001", files=None)
    calls = []
    _write_frames(
        group,
        frames,
        120,
        found,
        array_compressors("frames"),
        lambda function, *args: calls.append(function(*args)),
    )
    image = zarr.open_group(str(tmp_path / "a.zarr"), mode="r")["e"]["image"]
    np.testing.assert_array_equal(image[...], frames)
    np.testing.assert_array_equal(group["frame"][...], np.arange(120, 130))
    assert list(image.metadata.dimension_names) == ["frame", "y", "x", "color"]
    files = [p for p in (tmp_path / "a.zarr" / "e" / "image").rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == ["0", "zarr.json"]  # one data file
    if limit == FRAME_CHUNK_BYTES:
        assert image.chunks == frames.shape and image.shards is None
    else:  # three frames per chunk inside the expression's file
        assert image.chunks == (3, 24, 32, 3) and image.shards == (12, 24, 32, 3)
