"""Camera sources for `mmhe record`: a simulated camera, any camera OpenCV opens, XIMEA.

Every source delivers `Frame`s: the pixels as the camera gives them, the camera's frame
number (a gap means the camera itself lost frames) and the capture time on two clocks,
``time.monotonic()`` (the clock of LSL's ``local_clock()`` on Linux) and the wall clock
(seconds since the epoch, which names the file).

>>> camera = open_camera("simulated", width=320, height=240, fps=100)   # doctest: +SKIP
>>> camera.start(); frame = camera.grab(); camera.stop()                # doctest: +SKIP
>>> frame.image.shape, camera.pixel_format                              # doctest: +SKIP
((240, 320), 'bayer_rggb')
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mmhe.errors import ConfigError, DeviceError
from mmhe.io import bayer

__all__ = [
    "CameraSource",
    "Frame",
    "OpenCVCamera",
    "SimulatedCamera",
    "XimeaCamera",
    "open_camera",
]

XIMEA_INSTALL_HINT = (
    "the XIMEA camera needs XIMEA's Python API (xiAPI), which is not installed here: install "
    "the XIMEA Software Package for your system (driver + Python API), or `pip install "
    "xiapipy` on top of an installed XIMEA driver, then run again"
)


@dataclass(frozen=True, slots=True)
class Frame:
    """One grabbed frame.

    image : array (H, W) uint8 (raw Bayer or mono) or (H, W, 3) uint8 RGB.
    number : the camera's frame number since acquisition start (consecutive frames differ
        by 1; a larger step means the camera lost frames before they were grabbed).
    monotonic_s : capture time, seconds on ``time.monotonic()``.
    wall_s : capture time, seconds since the epoch (UTC); names the file in local time.
    """

    image: np.ndarray
    number: int
    monotonic_s: float
    wall_s: float


class CameraSource(ABC):
    """A camera delivering frames at its own rate once started.

    Attributes: ``width``, ``height`` (px), ``fps`` (Hz, nominal), ``pixel_format``
    ("bayer_rggb" / "bayer_bggr" / "bayer_grbg" / "bayer_gbrg", "mono" or "rgb") and
    ``description`` (one line for the log).
    """

    width: int
    height: int
    fps: float
    pixel_format: str
    description: str

    def start(self) -> None:  # noqa: B027 - optional hook
        """Start acquisition (free-running at `fps`)."""

    @abstractmethod
    def grab(self, out: np.ndarray | None = None) -> Frame:
        """The next frame; blocks until the camera delivers it. Raises `DeviceError`.

        out : a buffer of shape `frame_shape`, uint8, to fill (the recorder reuses a fixed
            set of buffers instead of allocating one per frame); None allocates.
        """

    def stop(self) -> None:  # noqa: B027 - optional hook
        """Stop acquisition and release the device."""

    @property
    def bayer_pattern(self) -> str | None:
        """ "RGGB" etc. when frames are raw Bayer, else None."""
        if self.pixel_format.startswith("bayer_"):
            return self.pixel_format.removeprefix("bayer_").upper()
        return None

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """Shape of one delivered frame: (H, W) raw / mono, (H, W, 3) RGB."""
        if self.pixel_format == "rgb":
            return (self.height, self.width, 3)
        return (self.height, self.width)

    @property
    def frame_bytes(self) -> int:
        """Bytes of one delivered frame."""
        return math.prod(self.frame_shape)


def _into(out: np.ndarray | None, image: np.ndarray) -> np.ndarray:
    """`image` copied into `out` when it fits, else a copy of its own."""
    if out is not None and out.shape == image.shape and out.dtype == image.dtype:
        np.copyto(out, image)
        return out
    return np.array(image, copy=True)


def _wall_minus_monotonic() -> float:
    """Wall clock minus monotonic clock (s), from the closest of a few paired readings."""
    best = None
    for _ in range(5):
        before = time.monotonic()
        wall = time.time()
        after = time.monotonic()
        if best is None or after - before < best[0]:
            best = (after - before, wall - 0.5 * (before + after))
    return best[1]


class SimulatedCamera(CameraSource):
    """A camera that delivers frames in real time at `fps`, as a free-running sensor does.

    width, height : frame size in px (at least 64 x 64; even for Bayer output).
    fps : frame rate in Hz.
    pixel_format : "bayer_rggb" (default: a colour high-speed camera's raw 8-bit frames,
        like the XIMEA MQ022CG-CM; any of the four Bayer layouts) or "rgb".
    pool_size : frames rendered in advance and replayed in a loop: the synthetic face of
        `mmhe.synth.face` (a participant's look drawn from `seed`) going through one smile
        (AU6 + AU12) and back, with camera noise.
    buffers : frames the camera keeps when the reader falls behind (the acquisition ring
        buffer a camera driver fills by DMA, e.g. XIMEA's buffers queue; 32 frames = 71 MB,
        213 ms at full size and 150 fps); older frames are overwritten and show as a
        frame-number gap.
    stamp : write the frame number (little-endian uint64) into the first 8 pixels of the
        top row, so a stored file can be matched to the frame it came from.

    Every `grab` waits for the frame's exposure time ``t0 + number / fps`` and returns a
    fresh copy (a camera fills a new buffer per frame).
    """

    def __init__(
        self,
        width: int = 2048,
        height: int = 1088,
        fps: float = 150.0,
        *,
        pixel_format: str = "bayer_rggb",
        pool_size: int = 32,
        buffers: int = 32,
        seed: int = 0,
        stamp: bool = True,
    ) -> None:
        if not (math.isfinite(fps) and fps > 0):
            raise ConfigError(f"simulated camera: fps must be a positive rate in Hz, got {fps}")
        if pixel_format != "rgb":
            try:
                pattern = bayer.check_pattern(pixel_format.removeprefix("bayer_"))
            except ValueError as exc:
                raise ConfigError(f"simulated camera: {exc} (or rgb)") from None
            pixel_format = f"bayer_{pattern.lower()}"
            if width % 2 or height % 2:
                raise ConfigError(
                    f"simulated camera: a Bayer frame needs even width and height, got "
                    f"{width} x {height}"
                )
        if pool_size < 1 or buffers < 1:
            raise ConfigError("simulated camera: pool_size and buffers must be at least 1")
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.pixel_format = pixel_format
        self.buffers = int(buffers)
        self.stamp = stamp
        self._pool = self._render_pool(pool_size, seed)
        self.description = (
            f"simulated camera {self.width} x {self.height} at {self.fps:g} fps "
            f"({pixel_format}, synthetic face, {pool_size} pre-rendered frames, seed {seed})"
        )
        self._t0: float | None = None
        self._next = 0

    def _render_pool(self, pool_size: int, seed: int) -> np.ndarray:
        from mmhe.synth import face

        rng = np.random.default_rng(seed)
        renderer = face.FaceRenderer(face.random_appearance(rng, self.width, self.height))
        shape = (pool_size, self.height, self.width)
        pool = np.empty(shape + ((3,) if self.pixel_format == "rgb" else ()), np.uint8)
        for k in range(pool_size):
            smile = 0.5 * (1.0 - math.cos(2.0 * math.pi * k / pool_size))
            rgb = renderer.render({6: 0.6 * smile, 12: smile}, rng=rng)
            pool[k] = rgb if self.pixel_format == "rgb" else bayer.mosaic(rgb, self.bayer_pattern)
        return pool

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._wall_offset = _wall_minus_monotonic()
        self._next = 0

    def grab(self, out: np.ndarray | None = None) -> Frame:
        if self._t0 is None:
            raise DeviceError("simulated camera: grab() before start()")
        period = 1.0 / self.fps
        number = self._next
        now = time.monotonic()
        newest = math.floor((now - self._t0) * self.fps)
        if number < newest - self.buffers + 1:  # overwritten in the camera's ring buffer
            number = newest - self.buffers + 1
        due = self._t0 + number * period
        if due > now:
            time.sleep(due - now)
        image = _into(out, self._pool[number % len(self._pool)])
        if self.stamp:
            image.reshape(-1)[:8] = np.frombuffer(np.uint64(number).tobytes(), np.uint8)
        self._next = number + 1
        return Frame(image, number, due, due + self._wall_offset)

    def stop(self) -> None:
        self._t0 = None


def stamped_number(image: np.ndarray) -> int:
    """The frame number `SimulatedCamera` wrote into the first 8 pixels (raw frames)."""
    return int(np.frombuffer(np.ascontiguousarray(image).reshape(-1)[:8].tobytes(), "<u8")[0])


class OpenCVCamera(CameraSource):
    """Any camera (or video source) OpenCV's `VideoCapture` opens.

    source : a device index (0, 1, ...) or anything `cv2.VideoCapture` accepts (a video
        file, a stream URL, a GStreamer pipeline).
    width, height, fps : requested; the values the device accepts are read back.
    Frames are RGB. The capture time is taken when OpenCV returns the frame (OpenCV gives
    no hardware timestamp or frame number, so lost frames cannot be detected here).
    A video file is read as fast as it decodes, not in real time.
    """

    def __init__(
        self, source: int | str, width: int | None = None, height: int | None = None,
        fps: float | None = None,
    ) -> None:  # fmt: skip
        import cv2

        self._cv2 = cv2
        self.source = source
        self._capture = cv2.VideoCapture(source)
        if not self._capture.isOpened():
            raise DeviceError(
                f"opencv:{source}: OpenCV cannot open this camera (is it connected, and not "
                "used by another program? `v4l2-ctl --list-devices` lists cameras on Linux)"
            )
        if width:
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            self._capture.set(cv2.CAP_PROP_FPS, fps)
        self.width = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or fps or 0.0)
        self.pixel_format = "rgb"
        self.description = (
            f"OpenCV source {source!r} ({self._capture.getBackendName()}), "
            f"{self.width} x {self.height} at {self.fps:g} fps"
        )
        self._number = 0
        self._wall_offset = _wall_minus_monotonic()

    def grab(self, out: np.ndarray | None = None) -> Frame:
        ok, bgr = self._capture.read()
        now = time.monotonic()
        if not ok or bgr is None:
            raise DeviceError(
                f"opencv:{self.source}: no frame (the camera stopped or the video ended)"
            )
        if bgr.ndim == 3 and out is not None and out.shape == bgr.shape:
            image = self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB, dst=out)
        elif bgr.ndim == 3:
            image = self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB)
        else:
            image = _into(out, bgr)
        self._number += 1
        return Frame(image, self._number - 1, now, now + self._wall_offset)

    def stop(self) -> None:
        self._capture.release()


def _import_xiapi():
    try:
        from ximea import xiapi  # the XIMEA Software Package's module
    except ImportError:
        try:
            from xiapipy import xiapi  # the PyPI distribution of the same API
        except ImportError:
            raise DeviceError(XIMEA_INSTALL_HINT) from None
    return xiapi


class XimeaCamera(CameraSource):
    """A XIMEA camera through XIMEA's Python API (xiAPI), raw 8-bit frames.

    serial : open the camera with this serial number (default: the first camera).
    width, height, fps : the region and frame rate to set (frame-rate-limit timing mode).
    Frames are XIMEA's RAW8 (Bayer on a colour camera, whose layout is read from the
    camera's colour filter array parameter); frame numbers are the camera's ``nframe``
    and capture times its own timestamps, put on the monotonic clock by the offset seen at
    the first frame. Raises `DeviceError` with install instructions when xiAPI is missing.
    """

    _CFA: ClassVar[dict[str, str]] = {
        "XI_CFA_BAYER_RGGB": "bayer_rggb",
        "XI_CFA_BAYER_BGGR": "bayer_bggr",
        "XI_CFA_BAYER_GRBG": "bayer_grbg",
        "XI_CFA_BAYER_GBRG": "bayer_gbrg",
    }

    def __init__(
        self, serial: str | None = None, width: int = 2048, height: int = 1088,
        fps: float = 150.0, timeout_ms: int = 1000,
    ) -> None:  # fmt: skip
        xiapi = _import_xiapi()
        self._xiapi = xiapi
        self._camera = xiapi.Camera()
        try:
            if serial:
                self._camera.open_device_by_SN(serial)
            else:
                self._camera.open_device()
            self._camera.set_imgdataformat("XI_RAW8")
            self._camera.set_width(int(width))
            self._camera.set_height(int(height))
            self._camera.set_acq_timing_mode("XI_ACQ_TIMING_MODE_FRAME_RATE_LIMIT")
            self._camera.set_framerate(float(fps))
            cfa = str(self._camera.get_param("cfa"))
        except xiapi.Xi_error as exc:
            raise DeviceError(f"ximea{':' + serial if serial else ''}: {exc}") from exc
        self.width = int(self._camera.get_width())
        self.height = int(self._camera.get_height())
        self.fps = float(self._camera.get_framerate())
        self.pixel_format = self._CFA.get(cfa, "mono")
        self.timeout_ms = int(timeout_ms)
        self.description = (
            f"XIMEA {self._camera.get_device_name()!s} {self.width} x {self.height} at "
            f"{self.fps:g} fps ({self.pixel_format})"
        )
        self._image = xiapi.Image()
        self._clock_offset: float | None = None
        self._wall_offset = _wall_minus_monotonic()

    def start(self) -> None:
        self._camera.start_acquisition()

    def grab(self, out: np.ndarray | None = None) -> Frame:
        try:
            self._camera.get_image(self._image, self.timeout_ms)
        except self._xiapi.Xi_error as exc:
            raise DeviceError(f"ximea: no frame within {self.timeout_ms} ms ({exc})") from exc
        camera_s = self._image.tsSec + self._image.tsUSec * 1e-6
        if self._clock_offset is None:
            self._clock_offset = time.monotonic() - camera_s
        image = _into(out, self._image.get_image_data_numpy())
        monotonic_s = camera_s + self._clock_offset
        return Frame(image, int(self._image.nframe), monotonic_s, monotonic_s + self._wall_offset)

    def stop(self) -> None:
        try:
            self._camera.stop_acquisition()
        finally:
            self._camera.close_device()


def open_camera(
    spec: str, *, width: int = 2048, height: int = 1088, fps: float = 150.0
) -> CameraSource:
    """A camera from its command-line spec.

    spec : "simulated", "simulated:rgb" (RGB instead of raw Bayer frames), "opencv:N"
        (device N, or a path / URL OpenCV opens), "ximea" or "ximea:SERIAL".
    Raises `ConfigError` for an unknown spec and `DeviceError` when the device cannot be
    opened (for XIMEA without its API: how to install it).
    """
    kind, _, argument = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "simulated":
        pixel_format = "rgb" if argument.lower() == "rgb" else f"bayer_{argument or 'rggb'}"
        return SimulatedCamera(width, height, fps, pixel_format=pixel_format)
    if kind == "opencv":
        if not argument:
            raise ConfigError("--camera opencv needs a device: opencv:0 (or a path / URL)")
        source: int | str = int(argument) if argument.isdigit() else argument
        return OpenCVCamera(source, width, height, fps)
    if kind == "ximea":
        return XimeaCamera(argument or None, width, height, fps)
    raise ConfigError(
        f"unknown camera {spec!r}: use simulated, simulated:rgb, opencv:N or ximea[:SERIAL]"
    )
