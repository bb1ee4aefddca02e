"""Acquisition: trigger-gated camera recording, as MMHE's lab recorded its face video.

`record` runs the capture loop (one capture thread reading the trigger with every frame,
a bounded queue, writer threads naming and writing each frame atomically) and writes a
camera folder that `mmhe.io.camera.FrameSequence` and `mmhe ingest` read unchanged.
Sources: `open_camera` (simulated, OpenCV, XIMEA) and `open_trigger` (a CSV script, a
serial line, a parallel port, an LSL marker stream); `--lsl` publishes the markers and
a per-frame counter on Lab Streaming Layer (`mmhe.record.lsl`).
"""

from mmhe.record.cameras import (
    CameraSource,
    Frame,
    OpenCVCamera,
    SimulatedCamera,
    XimeaCamera,
    open_camera,
)
from mmhe.record.capture import RecordConfig, record
from mmhe.record.triggers import (
    LSLTrigger,
    ParallelTrigger,
    ScriptTrigger,
    SerialTrigger,
    TriggerSource,
    open_trigger,
)
from mmhe.record.writer import TiffFrameWriter, frame_file_name

__all__ = [
    "CameraSource",
    "Frame",
    "LSLTrigger",
    "OpenCVCamera",
    "ParallelTrigger",
    "RecordConfig",
    "ScriptTrigger",
    "SerialTrigger",
    "SimulatedCamera",
    "TiffFrameWriter",
    "TriggerSource",
    "XimeaCamera",
    "frame_file_name",
    "open_camera",
    "open_trigger",
    "record",
]
