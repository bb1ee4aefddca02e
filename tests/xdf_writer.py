"""A small XDF 1.0 writer for tests: streams with planted clocks, jitter and markers.

Writes the chunk types LabRecorder writes (FileHeader, StreamHeader, Samples with a time
stamp per sample, ClockOffset, StreamFooter), following the XDF specification, so tests
can check that `mmhe.io.xdf` (through pyxdf) recovers what was planted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

_FORMATS = {"float32": "<f4", "double64": "<f8", "int32": "<i4", "int16": "<i2"}


@dataclass
class Stream:
    """One stream: `stamps` on the stream's own clock; `offsets` (collection time on the
    stream's clock, offset value = recorder clock - stream clock) as LSL measures them."""

    name: str
    type: str
    channel_format: str
    nominal_srate: float
    stamps: np.ndarray
    samples: object  # (n, channels) array, or a list of str for a string marker stream
    offsets: list[tuple[float, float]] = field(default_factory=list)
    labels: list[str] | None = None
    units: list[str] | None = None
    source_id: str = ""


def _chunk(tag: int, content: bytes) -> bytes:
    length = len(content) + 2
    return bytes([8]) + struct.pack("<Q", length) + struct.pack("<H", tag) + content


def _varlen(value: int) -> bytes:
    return bytes([4]) + struct.pack("<I", value)


def _header_xml(stream: Stream, channels: int) -> str:
    desc = ""
    if stream.labels:
        units = stream.units or [""] * channels
        desc = (
            "<desc><channels>"
            + "".join(
                f"<channel><label>{escape(label)}</label><unit>{escape(unit)}</unit></channel>"
                for label, unit in zip(stream.labels, units, strict=True)
            )
            + "</channels></desc>"
        )
    return (
        '<?xml version="1.0"?><info>'
        f"<name>{escape(stream.name)}</name><type>{escape(stream.type)}</type>"
        f"<channel_count>{channels}</channel_count>"
        f"<nominal_srate>{stream.nominal_srate}</nominal_srate>"
        f"<channel_format>{stream.channel_format}</channel_format>"
        f"<source_id>{escape(stream.source_id)}</source_id>{desc}</info>"
    )


def write_xdf(path: Path, streams: list[Stream], chunk: int = 100) -> Path:
    """Write `streams` into an XDF file (samples in chunks of `chunk`)."""
    out = bytearray(b"XDF:")
    out += _chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')
    for sid, stream in enumerate(streams, start=1):
        channels = 1 if stream.channel_format == "string" else np.asarray(stream.samples).shape[1]
        out += _chunk(2, struct.pack("<I", sid) + _header_xml(stream, channels).encode())
    for sid, stream in enumerate(streams, start=1):
        n = len(stream.stamps)
        for first in range(0, n, chunk):
            body = bytearray(struct.pack("<I", sid)) + _varlen(min(chunk, n - first))
            for k in range(first, min(first + chunk, n)):
                body += bytes([8]) + struct.pack("<d", float(stream.stamps[k]))
                if stream.channel_format == "string":
                    text = str(stream.samples[k]).encode()
                    body += _varlen(len(text)) + text
                else:
                    row = np.asarray(stream.samples[k], dtype=_FORMATS[stream.channel_format])
                    body += row.tobytes()
            out += _chunk(3, bytes(body))
        for when, value in stream.offsets:
            out += _chunk(4, struct.pack("<I", sid) + struct.pack("<dd", when, value))
    for sid, stream in enumerate(streams, start=1):
        first, last = (stream.stamps[0], stream.stamps[-1]) if len(stream.stamps) else (0, 0)
        footer = (
            '<?xml version="1.0"?><info>'
            f"<first_timestamp>{first}</first_timestamp><last_timestamp>{last}</last_timestamp>"
            f"<sample_count>{len(stream.stamps)}</sample_count></info>"
        )
        out += _chunk(6, struct.pack("<I", sid) + footer.encode())
    path.write_bytes(bytes(out))
    return path
