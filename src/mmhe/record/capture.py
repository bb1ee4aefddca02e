"""The trigger-gated capture loop of `mmhe record`, its writer queue and its log.

MMHE's acquisition control logic (`../seed/Experimental_equipment_description.png`):
the camera runs free; with every frame the recorder reads the trigger line. While the
value is > 0 frames are captured, a new value starts a new marker segment, and 0 or a
negative value stops capture. "Enqueue: store the received image data and DB25 values
as pairs in the buffer. Dequeue: convert the DB25 values and image sampling timestamps
into image names (ensuring data uniqueness) and store them on the solid-state drive."

Here one capture thread grabs each frame, reads the trigger and puts (frame, marker,
frame index) into a bounded queue without ever blocking; writer threads dequeue, name
each frame (`frame_file_name`) and write it atomically (`TiffFrameWriter`). A frame
that finds the queue full is dropped and counted; a frame the camera lost shows as a
gap in its frame numbers, advances the counter (as in the real data) and is counted.
Every captured frame is either written or counted as dropped, with the reason.

>>> from mmhe.record import open_camera, open_trigger, record        # doctest: +SKIP
>>> log = record("Camera", open_camera("simulated"), open_trigger("script.csv"))  # doctest: +SKIP
>>> log["frames"]["written"], log["frames"]["dropped"]                # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import queue
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from mmhe import __version__
from mmhe.errors import ConfigError, MMHEError
from mmhe.io.frame_names import COUNTER_MODULUS
from mmhe.record.cameras import CameraSource, Frame
from mmhe.record.triggers import MAX_CODE, TriggerSource
from mmhe.record.writer import TiffFrameWriter, frame_file_name

__all__ = ["RecordConfig", "record"]

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_MAX_LISTED = 100  # dropped frames and errors listed one by one in the log
MAX_QUEUE_FRAMES = 4096
"""Most frames the queue holds, whatever `buffer_mb` allows (small frames)."""


class RecordConfig(BaseModel):
    """Settings of one recording (saved in its log).

    duration_s : stop after this many seconds (None: at the end of a trigger script, or
        on Ctrl-C / SIGTERM).
    rgb : demosaic a colour camera's raw Bayer frames before writing (3x the bytes);
        by default frames are stored as delivered and demosaiced on read.
    writers : writer threads.
    buffer_mb : memory for queued frames (MB); the queue holds buffer_mb / frame size
        frames (at least 2, at most `MAX_QUEUE_FRAMES`).
    lsl : publish the marker and frame-counter LSL streams (`mmhe.record.lsl`).
    lsl_name : prefix of the LSL stream names.
    """

    duration_s: float | None = Field(default=None, gt=0)
    rgb: bool = False
    writers: int = Field(default=2, ge=1, le=32)
    buffer_mb: float = Field(default=1024.0, gt=0)
    lsl: bool = False
    lsl_name: str = "MMHE-camera"


@dataclass
class _CodeCounts:
    """Per marker code: segments and frames, first and last capture."""

    segments: int = 0
    captured: int = 0
    written: int = 0
    dropped: int = 0
    camera_lost: int = 0
    first_wall_s: float | None = None
    last_wall_s: float | None = None
    first_index: int | None = None
    last_index: int | None = None


@dataclass
class _State:
    """Counters shared by the capture thread, the writers and the main thread."""

    capacity: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    stop_reason: str | None = None
    code: int = 0
    captured: int = 0
    idle: int = 0
    camera_lost: int = 0
    written: int = 0
    dropped_queue_full: int = 0
    dropped_write_failed: int = 0
    bytes_written: int = 0
    write_busy_s: float = 0.0
    first_write_s: float | None = None
    last_write_s: float | None = None
    high_water: int = 0
    write_failed: bool = False
    codes: dict[int, _CodeCounts] = field(default_factory=dict)
    segments: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def request_stop(self, reason: str) -> None:
        with self.lock:
            if self.stop_reason is None:
                self.stop_reason = reason
        self.stop.set()

    def error(self, message: str) -> None:
        with self.lock:
            if len(self.errors) < _MAX_LISTED:
                self.errors.append(message)

    def drop(self, code: int, index: int, reason: str) -> None:
        """Count one captured frame that will not be written (caller holds no lock)."""
        with self.lock:
            if reason == "queue full":
                self.dropped_queue_full += 1
            else:
                self.dropped_write_failed += 1
            self.codes[code].dropped += 1
            if len(self.dropped) < _MAX_LISTED:
                self.dropped.append(
                    {"frame": index, "counter": index % COUNTER_MODULUS, "marker": code,
                     "reason": reason}
                )  # fmt: skip


CAPTURE_NICE = -10
"""Nice value asked for the capture thread (granted to root / CAP_SYS_NICE only): it needs
little CPU but must run on time, as a camera's acquisition thread does."""


def _raise_priority() -> int:
    """Give the calling thread nice `CAPTURE_NICE` when allowed; returns its nice value."""
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, CAPTURE_NICE)
    except (PermissionError, OSError, AttributeError):
        pass
    try:
        return os.getpriority(os.PRIO_PROCESS, thread)
    except (OSError, AttributeError):
        return 0


def _name_or_none(wall_s: float | None, index: int | None, code: int) -> str | None:
    return None if wall_s is None or index is None else frame_file_name(wall_s, index, code)


def _iso(wall_s: float | None) -> str | None:
    if wall_s is None:
        return None
    return dt.datetime.fromtimestamp(wall_s).isoformat(timespec="milliseconds")


class _Recorder:
    """One recording: the capture thread, the writer threads and the log."""

    def __init__(
        self,
        out: Path,
        camera: CameraSource,
        trigger: TriggerSource,
        config: RecordConfig,
        writer: TiffFrameWriter,
        stop: threading.Event | None,
    ) -> None:
        self.out, self.camera, self.trigger, self.config = out, camera, trigger, config
        self.writer = writer
        self.frame_bytes = camera.frame_bytes
        capacity = max(2, min(MAX_QUEUE_FRAMES, int(config.buffer_mb * 1e6 // self.frame_bytes)))
        self.state = _State(capacity=capacity)
        if stop is not None:
            self.state.stop = stop
        # The buffer: `capacity` frame buffers allocated once and reused (last freed, first
        # reused, so only as many are ever touched as the queue's high-water mark needs);
        # a frame is enqueued only with a free buffer, else it is dropped and counted.
        shape = camera.frame_shape
        self.free: queue.LifoQueue[np.ndarray] = queue.LifoQueue()
        for _ in range(capacity):
            self.free.put(np.empty(shape, np.uint8))
        self.scratch = np.empty(shape, np.uint8)  # receives frames that find no buffer
        self.queue: queue.SimpleQueue[tuple[Frame, int, int, bool] | None] = queue.SimpleQueue()
        self.publisher = None
        if config.lsl:
            from mmhe.record.lsl import LSLPublisher

            self.publisher = LSLPublisher(camera.fps or 0.0, out, config.lsl_name)
        self.started_wall = time.time()
        self.started = time.monotonic()
        self.stopped_wall: float | None = None
        stamp = dt.datetime.fromtimestamp(self.started_wall).strftime("%Y%m%d-%H%M%S")
        self.log_path = out / f"record-{stamp}.json"
        suffix = 1
        while self.log_path.exists():
            suffix += 1
            self.log_path = out / f"record-{stamp}-{suffix}.json"
        self.capture_priority: int | None = None
        self.load_start = os.getloadavg()
        self.cpu_start = os.times()

    # ------------------------------------------------------------ capture thread

    def capture(self) -> None:
        state, camera, trigger = self.state, self.camera, self.trigger
        code = 0
        index = 0  # frame index of the next captured frame; the counter is index % 1000
        last_number: int | None = None
        segment: dict[str, Any] | None = None
        invalid_seen: set[int] = set()
        duration = self.config.duration_s
        try:
            self.capture_priority = _raise_priority()
            camera.start()
            trigger.start()
            started = time.monotonic()
            while not state.stop.is_set():
                if duration is not None and time.monotonic() - started >= duration:
                    state.request_stop("duration reached")
                    break
                try:
                    buffer = self.free.get_nowait()
                except queue.Empty:
                    buffer = None
                frame = camera.grab(self.scratch if buffer is None else buffer)
                value = trigger.read(frame.monotonic_s)
                pooled = buffer is not None and frame.image is buffer
                if buffer is not None and not pooled:  # the camera gave an array of its own
                    self.free.put(buffer)
                if value > MAX_CODE:
                    if value not in invalid_seen:
                        invalid_seen.add(value)
                        state.error(
                            f"trigger value {value} does not fit the 8-bit marker of a frame "
                            "name: frames not captured while it holds"
                        )
                    value = 0
                if value <= 0:
                    if pooled:
                        self.free.put(buffer)
                    if code:
                        self._close_segment(segment, frame)
                        code, segment = 0, None
                    state.idle += 1
                    if trigger.finished(frame.monotonic_s):
                        state.request_stop("end of trigger script")
                        break
                    continue
                if value != code:
                    if code:
                        self._close_segment(segment, frame)
                    code = value
                    segment = self._open_segment(code, frame)
                elif last_number is not None and frame.number - last_number > 1:
                    lost = frame.number - last_number - 1
                    index += lost  # the counter advances over lost frames
                    with state.lock:
                        state.camera_lost += lost
                        state.codes[code].camera_lost += lost
                last_number = frame.number
                self._enqueue(frame, code, index, has_room=buffer is not None, pooled=pooled)
                segment["frames"] += 1
                index += 1
        except MMHEError as exc:
            state.error(str(exc))
            state.request_stop("device error")
        except BaseException as exc:  # never lose a frame silently to a bug: say it
            state.error(f"capture failed: {type(exc).__name__}: {exc}")
            state.request_stop("capture error")
        finally:
            if code and segment is not None:
                self._close_segment(segment, None)
            for close in (camera.stop, trigger.close):
                try:
                    close()
                except Exception as exc:  # a device that fails to close: log it
                    state.error(f"closing a device failed: {type(exc).__name__}: {exc}")

    def _open_segment(self, code: int, frame: Frame) -> dict[str, Any]:
        state = self.state
        with state.lock:
            state.code = code
            counts = state.codes.setdefault(code, _CodeCounts())
            counts.segments += 1
            segment = {"code": code, "start": _iso(frame.wall_s), "stop": None, "frames": 0}
            state.segments.append(segment)
        if self.publisher is not None:
            self.publisher.push_marker(code, frame.monotonic_s)
        return segment

    def _close_segment(self, segment: dict[str, Any], frame: Frame | None) -> None:
        with self.state.lock:
            self.state.code = 0
            counts = self.state.codes[segment["code"]]
            segment["stop"] = _iso(frame.wall_s if frame is not None else counts.last_wall_s)
        if self.publisher is not None:
            when = frame.monotonic_s if frame is not None else time.monotonic()
            self.publisher.push_marker(0, when)

    def _enqueue(
        self, frame: Frame, code: int, index: int, *, has_room: bool, pooled: bool
    ) -> None:
        """Count a captured frame and queue it for writing; without a free buffer
        (`has_room` False: the frame went to the scratch buffer) it is dropped and counted.
        `pooled`: the frame's pixels are in one of the buffers (returned after writing)."""
        state = self.state
        with state.lock:
            state.captured += 1
            counts = state.codes[code]
            counts.captured += 1
            if counts.first_wall_s is None:
                counts.first_wall_s, counts.first_index = frame.wall_s, index
            counts.last_wall_s, counts.last_index = frame.wall_s, index
        if self.publisher is not None:
            self.publisher.push_frame(index, index % COUNTER_MODULUS, code, frame.monotonic_s)
        if not has_room:
            state.drop(code, index, "queue full")
            return
        self.queue.put((frame, code, index, pooled))
        used = state.capacity - self.free.qsize()
        if used > state.high_water:
            state.high_water = used

    # ------------------------------------------------------------ writer threads

    def write_loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            frame, code, index, pooled = item
            try:
                self._write_one(frame, code, index)
            finally:
                if pooled:
                    self.free.put(frame.image)

    def _write_one(self, frame: Frame, code: int, index: int) -> None:
        state = self.state
        if state.write_failed:
            state.drop(code, index, "not written after a write failure")
            return
        name = frame_file_name(frame.wall_s, index, code)
        began = time.perf_counter()
        try:
            n_bytes = self.writer.write(frame.image, name)
        except FileExistsError as exc:
            state.error(str(exc))
            state.drop(code, index, "name exists")
            return
        except OSError as exc:
            reason = "disk full" if exc.errno in _DISK_FULL else "write error"
            state.write_failed = True
            state.error(f"{self.out / name}: {reason}: {exc.strerror or exc}")
            state.drop(code, index, reason)
            state.request_stop(reason)
            return
        except BaseException as exc:  # a bug in writing: stop cleanly and say it
            state.write_failed = True
            state.error(f"{self.out / name}: writing failed: {type(exc).__name__}: {exc}")
            state.drop(code, index, "write error")
            state.request_stop("write error")
            return
        ended = time.perf_counter()
        with state.lock:
            state.written += 1
            state.codes[code].written += 1
            state.bytes_written += n_bytes
            state.write_busy_s += ended - began
            if state.first_write_s is None:
                state.first_write_s = began
            state.last_write_s = ended

    # ------------------------------------------------------------ progress and log

    def snapshot(self) -> dict[str, Any]:
        """Counters for a progress display."""
        state = self.state
        with state.lock:
            return {
                "elapsed_s": time.monotonic() - self.started,
                "code": state.code,
                "captured": state.captured,
                "written": state.written,
                "dropped": state.dropped_queue_full + state.dropped_write_failed,
                "camera_lost": state.camera_lost,
                "queued": state.capacity - self.free.qsize(),
                "capacity": state.capacity,
                "idle": state.idle,
            }

    def log(self, status: str) -> dict[str, Any]:
        state = self.state
        with state.lock:
            codes = []
            for code, c in sorted(state.codes.items()):
                codes.append(
                    {
                        "code": code,
                        "segments": c.segments,
                        "captured": c.captured,
                        "written": c.written,
                        "dropped": c.dropped,
                        "camera_lost": c.camera_lost,
                        "first_timestamp": _iso(c.first_wall_s),
                        "last_timestamp": _iso(c.last_wall_s),
                        "first_frame": _name_or_none(c.first_wall_s, c.first_index, code),
                        "last_frame": _name_or_none(c.last_wall_s, c.last_index, code),
                    }
                )
            dropped = state.dropped_queue_full + state.dropped_write_failed
            write_span = (
                state.last_write_s - state.first_write_s
                if state.first_write_s is not None and state.last_write_s is not None
                else 0.0
            )
            stopped = self.stopped_wall
            cpu = os.times()
            wall = (stopped or time.time()) - self.started_wall
            return {
                "mmhe_version": __version__,
                "status": status,
                "folder": str(self.out),
                "log": str(self.log_path),
                "started": _iso(self.started_wall),
                "stopped": _iso(stopped),
                "stopped_by": state.stop_reason,
                "seconds": round(wall, 3),
                "camera": {
                    "source": self.camera.description,
                    "width": self.camera.width,
                    "height": self.camera.height,
                    "fps": self.camera.fps,
                    "pixel_format": self.camera.pixel_format,
                    "frame_bytes": self.frame_bytes,
                    "stored_as": self.writer.stored_as,
                },
                "trigger": self.trigger.description,
                "config": self.config.model_dump(),
                "frames": {
                    "captured": state.captured,
                    "written": state.written,
                    "dropped": dropped,
                    "dropped_queue_full": state.dropped_queue_full,
                    "dropped_write_failed": state.dropped_write_failed,
                    "camera_lost": state.camera_lost,
                    "idle": state.idle,
                    "pending": state.captured - state.written - dropped,
                },
                "codes": codes,
                "segments": list(state.segments),
                "dropped_frames": list(state.dropped),
                "queue": {
                    "capacity_frames": state.capacity,
                    "high_water_frames": state.high_water,
                    "high_water_mb": round(state.high_water * self.frame_bytes / 1e6, 1),
                },
                "write": {
                    "bytes": state.bytes_written,
                    "mb_per_s": round(state.bytes_written / write_span / 1e6, 1)
                    if write_span > 0
                    else None,
                    "busy_mb_per_s_per_writer": round(
                        state.bytes_written / state.write_busy_s / 1e6, 1
                    )
                    if state.write_busy_s > 0
                    else None,
                    "writers": self.config.writers,
                },
                "memory_high_water_mb": round(
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
                ),
                "machine": {
                    "load_average_start": [round(x, 2) for x in self.load_start],
                    "load_average_end": [round(x, 2) for x in os.getloadavg()],
                    "cpu_s": round(
                        (cpu.user - self.cpu_start.user) + (cpu.system - self.cpu_start.system),
                        2,
                    ),
                    "cores": os.cpu_count(),
                    "capture_thread_nice": self.capture_priority,
                },
                "lsl": None if self.publisher is None else self.publisher.summary(),
                "errors": list(state.errors),
            }

    def write_log(self, status: str) -> dict[str, Any]:
        log = self.log(status)
        temporary = self.log_path.with_name(f".{self.log_path.name}.part")
        temporary.write_text(json.dumps(log, indent=2))
        os.replace(temporary, self.log_path)
        return log


def record(
    out: str | os.PathLike[str],
    camera: CameraSource,
    trigger: TriggerSource,
    config: RecordConfig | None = None,
    *,
    writer: TiffFrameWriter | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Record trigger-gated frames from `camera` into the camera folder `out`.

    out : the camera folder (created); frames ``YYYY-MM-DD-HH-MM-SS-mmm-CCC-MARKER.tif``
        go into it, next to the log ``record-YYYYmmdd-HHMMSS.json``. Existing frames are
        never overwritten.
    camera, trigger : opened sources (`open_camera`, `open_trigger`); both are closed here.
    config : `RecordConfig` (duration, RGB, writers, buffer, LSL).
    writer : the frame writer (default `TiffFrameWriter` for the camera's pixel format).
    progress : called about 4 times a second with counters (see `_Recorder.snapshot`).
    stop : an event that ends the recording when set (besides duration, the end of a
        trigger script, SIGINT / SIGTERM in the main thread, a full disk).

    Stopping always stops capture first, then lets the writers empty the queue, then
    writes the log. Returns the log (also written as JSON): frames captured / written /
    dropped (with reasons) / lost by the camera, per-code counts and first and last
    timestamps, segments, queue high-water mark, write throughput, memory high-water mark.
    """
    config = config or RecordConfig()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; give a camera folder to record into")
    out.mkdir(parents=True, exist_ok=True)
    pattern = camera.bayer_pattern
    writer = writer or TiffFrameWriter(out, pattern, to_rgb=config.rgb)
    recorder = _Recorder(out, camera, trigger, config, writer, stop)
    state = recorder.state
    recorder.write_log("recording")

    in_main = threading.current_thread() is threading.main_thread()
    previous: dict[int, Any] = {}
    if in_main:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(
                signum, lambda number, _frame: state.request_stop(signal.Signals(number).name)
            )
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(min(switch_interval, 0.0005))  # the capture thread must run on time
    writers = [
        threading.Thread(target=recorder.write_loop, name=f"mmhe-writer-{i}", daemon=True)
        for i in range(config.writers)
    ]
    capture = threading.Thread(target=recorder.capture, name="mmhe-capture", daemon=True)
    try:
        for thread in writers:
            thread.start()
        capture.start()
        while capture.is_alive():
            capture.join(timeout=0.25)
            if progress is not None:
                progress(recorder.snapshot())
    finally:
        state.stop.set()
        capture.join()
        for _ in writers:
            recorder.queue.put(None)  # after every frame already queued
        for thread in writers:
            while thread.is_alive():
                thread.join(timeout=0.25)
                if progress is not None:
                    progress(recorder.snapshot())
        sys.setswitchinterval(switch_interval)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if recorder.publisher is not None:
            recorder.publisher.close()
        recorder.stopped_wall = time.time()
    if state.stop_reason is None:
        state.stop_reason = "stopped"
    return recorder.write_log("complete")
