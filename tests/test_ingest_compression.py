"""Ingest compression: chosen per array kind, a documented option, never the content."""

from __future__ import annotations

import numpy as np
import zarr
from typer.testing import CliRunner

from mmhe.store import IngestConfig, ingest


def test_compression_changes_how_arrays_are_written_not_what_they_hold(
    synth_tiny, store_tiny, tmp_path
):
    plain = ingest(
        synth_tiny, tmp_path / "plain", config=IngestConfig(compression="none"), scheduler="sync"
    )
    assert plain.name == store_tiny.name  # same store version: same content
    sid = sorted(p.name for p in (store_tiny / "participants").iterdir())[0]
    fast = zarr.open_group(str(store_tiny / "participants" / sid / "arrays.zarr"), mode="r")
    none = zarr.open_group(str(plain / "participants" / sid / "arrays.zarr"), mode="r")
    frames = sorted(fast["frames"].group_keys())[0]
    for name in ("eeg_continuous", "physio", f"frames/{frames}/image"):
        assert none[name].compressors == ()
        (codec,) = fast[name].compressors
        assert type(codec).__name__ == "BloscCodec" and codec.cname.value == "lz4"
        np.testing.assert_array_equal(np.asarray(fast[name][...]), np.asarray(none[name][...]))
    summary_fast = (store_tiny / "participants" / sid / "summary.json").read_text()
    summary_none = (plain / "participants" / sid / "summary.json").read_text()
    assert '"input_key"' in summary_fast
    key = [line for line in summary_fast.splitlines() if '"input_key"' in line]
    assert key == [line for line in summary_none.splitlines() if '"input_key"' in line]


def test_compression_option_is_checked(tmp_path):
    from mmhe.cli import app

    result = CliRunner().invoke(
        app, ["ingest", str(tmp_path), "--out", str(tmp_path / "s"), "--compression", "lzma"]
    )
    assert result.exit_code == 2
    assert "fast, small, none" in result.output
