"""Lab Streaming Layer outlets of `mmhe record --lsl`: markers and a per-frame counter.

LabRecorder (or any LSL recorder) then records the camera's markers and every frame's
capture time in the same XDF file as the EEG and physiology streams, on LSL's clock
(sub-millisecond offsets between machines), and `mmhe.io.xdf` reads them back.

Streams (``source_id`` = ``mmhe-record:<host>:<folder>`` + a suffix, so LabRecorder can
pick them up again after a restart):

- ``<name>-markers``: type "Markers", one int32 channel, irregular rate: the trigger code
  at the capture time of the first frame of each marker segment, and 0 when capture stops.
- ``<name>-frames``: type "FrameCounter", three int32 channels ``frame`` (frames captured
  in this recording, from 0), ``counter`` (the file name's counter, modulo 1000) and
  ``marker``, one sample per captured frame at its capture time; nominal rate = fps, marked
  ``can_drop_samples`` so pyxdf does not smooth the time stamps of lost frames away.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

FRAME_STREAM_TYPE = "FrameCounter"
MARKER_STREAM_TYPE = "Markers"
SOURCE_PREFIX = "mmhe-record"
FRAME_CHANNELS = ("frame", "counter", "marker")


class LSLPublisher:
    """The two outlets of one recording. Times given to `push_*` are ``time.monotonic()``
    seconds; they are moved to ``pylsl.local_clock()`` by an offset measured at creation.

    name : stream name prefix (default "MMHE-camera").
    fps : nominal rate of the frame stream (Hz).
    folder : the recording's folder (part of the source id).
    """

    def __init__(self, fps: float, folder: Path, name: str = "MMHE-camera") -> None:
        import pylsl

        self._pylsl = pylsl
        source = f"{SOURCE_PREFIX}:{socket.gethostname()}:{Path(folder).resolve()}"
        markers = pylsl.StreamInfo(
            f"{name}-markers", MARKER_STREAM_TYPE, 1, pylsl.IRREGULAR_RATE, "int32",
            f"{source}:markers",
        )  # fmt: skip
        frames = pylsl.StreamInfo(
            f"{name}-frames", FRAME_STREAM_TYPE, len(FRAME_CHANNELS), float(fps), "int32",
            f"{source}:frames",
        )  # fmt: skip
        channels = frames.desc().append_child("channels")
        for label in FRAME_CHANNELS:
            channels.append_child("channel").append_child_value("label", label)
        frames.desc().append_child("synchronization").append_child_value("can_drop_samples", "true")
        for info in (markers, frames):
            info.desc().append_child_value("manufacturer", "mmhe record")
        self.marker_outlet = pylsl.StreamOutlet(markers)
        self.frame_outlet = pylsl.StreamOutlet(frames, chunk_size=1)
        self.names = (markers.name(), frames.name())
        self.offset_s = self._clock_offset()
        self.markers_sent = 0
        self.frames_sent = 0

    def _clock_offset(self) -> float:
        """``local_clock() - time.monotonic()`` from the closest of a few paired readings."""
        best = None
        for _ in range(5):
            before = time.monotonic()
            lsl = self._pylsl.local_clock()
            after = time.monotonic()
            if best is None or after - before < best[0]:
                best = (after - before, lsl - 0.5 * (before + after))
        return best[1]

    def push_marker(self, code: int, monotonic_s: float) -> None:
        """A marker sample (`code`, 0 = capture stopped) at a monotonic time."""
        self.marker_outlet.push_sample([int(code)], monotonic_s + self.offset_s)
        self.markers_sent += 1

    def push_frame(self, frame: int, counter: int, marker: int, monotonic_s: float) -> None:
        """One captured frame at its capture time."""
        self.frame_outlet.push_sample([frame, counter, marker], monotonic_s + self.offset_s)
        self.frames_sent += 1

    def summary(self) -> dict[str, object]:
        return {
            "streams": list(self.names),
            "markers_sent": self.markers_sent,
            "frames_sent": self.frames_sent,
            "clock_offset_s": self.offset_s,
        }

    def close(self) -> None:
        del self.marker_outlet
        del self.frame_outlet
