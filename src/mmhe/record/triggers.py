"""Trigger sources for `mmhe record`: the value on the trigger line, read with every frame.

The trigger line carries the stimulus marker the EEG and BIOPAC receive too: a code > 0
while a clip plays, 0 (or a negative value) in between. Sources:

- ``FILE.csv`` (`ScriptTrigger`): columns ``time_s,value``, replayed in real time from the
  start of the recording (each value holds until the next row);
- ``serial:PORT[@BAUD]`` (`SerialTrigger`, pyserial): each byte received is the new value;
- ``parallel:ADDRESS`` (`ParallelTrigger`, pyparallel): the eight data lines of a
  parallel (DB25) port read as one byte;
- ``lsl:STREAM`` (`LSLTrigger`, pylsl): the latest sample of an LSL marker stream.

>>> trigger = open_trigger("script.csv"); trigger.start(); trigger.read()   # doctest: +SKIP
0
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import pandas as pd

from mmhe.errors import ConfigError, DeviceError, InputFileError

__all__ = [
    "LSLTrigger",
    "ParallelTrigger",
    "ScriptTrigger",
    "SerialTrigger",
    "TriggerSource",
    "open_trigger",
]

MAX_CODE = 255
"""Largest marker a frame name can carry (the 8-bit DB25 value)."""


class TriggerSource(ABC):
    """The trigger line. `read` is called once per grabbed frame and must not block."""

    description: str

    def start(self) -> None:  # noqa: B027 - optional hook
        """Open the line; a script's time 0 is this call."""

    @abstractmethod
    def read(self, at: float | None = None) -> int:
        """The value on the line (an int; > 0 = a marker code).

        at : the frame's capture time (``time.monotonic()`` seconds). Sources that know
            their history (a script, time-stamped LSL samples) give the value at that
            time; a polled hardware line gives its value now, as the lab's recorder did.
        """

    def finished(self, at: float | None = None) -> bool:
        """True when the source will never change again (a script that has ended)."""
        return False

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device."""


class ScriptTrigger(TriggerSource):
    """A trigger script replayed in real time.

    path : CSV with columns ``time_s`` (seconds from the start of the recording,
        non-decreasing, >= 0) and ``value`` (integers <= 255; > 0 captures, 0 or negative
        stops). Before the first row the value is 0; the last row's value holds forever.
    Raises `InputFileError` naming the file and every bad row (header = row 1).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.times, self.values = read_trigger_script(self.path)
        self.description = (
            f"trigger script {self.path} ({len(self.times)} rows, {self.times[-1]:g} s)"
        )
        self._t0: float | None = None

    def start(self) -> None:
        self._t0 = time.monotonic()

    def value_at(self, elapsed_s: float) -> int:
        """The scripted value `elapsed_s` seconds after `start`."""
        row = int(np.searchsorted(self.times, elapsed_s, side="right")) - 1
        return int(self.values[row]) if row >= 0 else 0

    def read(self, at: float | None = None) -> int:
        if self._t0 is None:
            raise DeviceError(f"{self.path}: read() before start()")
        return self.value_at((time.monotonic() if at is None else at) - self._t0)

    def finished(self, at: float | None = None) -> bool:
        if self._t0 is None:
            return False
        elapsed = (time.monotonic() if at is None else at) - self._t0
        return elapsed >= self.times[-1] and int(self.values[-1]) <= 0


def read_trigger_script(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(time_s float64, value int64) arrays of a trigger script; see `ScriptTrigger`."""
    if not path.is_file():
        raise InputFileError(path, "trigger script not found", "give a CSV with time_s,value")
    try:
        table = pd.read_csv(path, dtype=str, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"not a readable CSV ({exc})", "columns time_s,value") from exc
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in ("time_s", "value") if c not in table.columns]
    if missing:
        raise InputFileError(
            path,
            f"missing column(s) {missing} (found {list(table.columns)})",
            "a trigger script has the header time_s,value",
        )
    if table.empty:
        raise InputFileError(path, "the trigger script has no rows", "add time_s,value rows")
    times = pd.to_numeric(table["time_s"], errors="coerce").to_numpy(float)
    numbers = pd.to_numeric(table["value"], errors="coerce").to_numpy(float)
    problems = []
    for i, (t, v) in enumerate(zip(times, numbers, strict=True)):
        row = i + 2  # the header is row 1
        if not np.isfinite(t) or t < 0:
            problems.append(f"row {row}: time_s {table['time_s'].iloc[i]!r} is not a time >= 0")
        elif i and np.isfinite(times[i - 1]) and t < times[i - 1]:
            problems.append(f"row {row}: time_s {t:g} goes back in time")
        if not np.isfinite(v) or v != np.round(v):
            problems.append(f"row {row}: value {table['value'].iloc[i]!r} is not an integer")
        elif v > MAX_CODE:
            problems.append(f"row {row}: value {int(v)} does not fit the 8-bit marker (<= 255)")
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; ... {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise InputFileError(path, f"{len(problems)} bad row(s): {shown}", "fix these rows")
    return times, numbers.astype(np.int64)


class SerialTrigger(TriggerSource):
    """A serial trigger line (USB trigger boxes, microcontrollers): each byte is a value.

    port : device (``/dev/ttyUSB0``, ``COM3``) or any pyserial URL.
    baudrate : line speed (default 115200).
    `read` takes every byte that arrived since the last call and returns the newest
    (0..255); with nothing new it returns the last value.
    """

    def __init__(self, port: str, baudrate: int = 115200) -> None:
        import serial

        try:
            self._serial = serial.serial_for_url(port, baudrate=baudrate, timeout=0)
        except (serial.SerialException, ValueError) as exc:
            raise DeviceError(f"serial:{port}: cannot open the port ({exc})") from exc
        self.port = port
        self.description = f"serial trigger {port} at {baudrate} baud (one byte per value)"
        self._value = 0

    def read(self, at: float | None = None) -> int:
        try:
            waiting = self._serial.in_waiting
            if waiting:
                data = self._serial.read(waiting)
                if data:
                    self._value = data[-1]
        except OSError as exc:
            raise DeviceError(f"serial:{self.port}: the port failed ({exc})") from exc
        return self._value

    def close(self) -> None:
        self._serial.close()


class ParallelTrigger(TriggerSource):
    """The eight data lines of a parallel (DB25) port, read as one byte (pyparallel).

    address : the port number (0 = ``/dev/parport0`` on Linux, via the ppdev driver) or a
        device path. Raises `DeviceError` saying how to install pyparallel when it is absent.
    """

    def __init__(self, address: str) -> None:
        try:
            import parallel
        except ImportError:
            raise DeviceError(
                f"parallel:{address}: reading a parallel port needs pyparallel, which is not "
                "installed (`pip install pyparallel`; on Linux also `modprobe ppdev` and "
                "access to /dev/parport*)"
            ) from None
        port: int | str = int(address, 0) if address.strip().lstrip("-").isdigit() else address
        try:
            self._port = parallel.Parallel(port=port)
            self._port.setDataDir(False)  # the peripheral drives the data lines
        except OSError as exc:
            raise DeviceError(f"parallel:{address}: cannot open the port ({exc})") from exc
        self.address = address
        self.description = f"parallel port {address} (data lines D0-D7)"

    def read(self, at: float | None = None) -> int:
        try:
            return int(self._port.getData())
        except OSError as exc:
            raise DeviceError(f"parallel:{self.address}: reading failed ({exc})") from exc


class LSLTrigger(TriggerSource):
    """The value of an LSL marker stream at a frame's capture time (numbers, or text
    holding an integer).

    name : the stream's name; resolved on the network within `timeout_s`.
    Samples are placed on this computer's clock (LSL's time correction) and `read(at)`
    returns the newest value stamped at or before `at`. Samples that are not integers are
    skipped and counted in `ignored`.
    """

    def __init__(self, name: str, timeout_s: float = 5.0) -> None:
        import pylsl

        streams = pylsl.resolve_byprop("name", name, minimum=1, timeout=timeout_s)
        if not streams:
            raise DeviceError(
                f"lsl:{name}: no LSL stream named {name!r} found within {timeout_s:g} s "
                "(is its outlet running on this network?)"
            )
        self._inlet = pylsl.StreamInlet(
            streams[0], max_buflen=60, processing_flags=pylsl.proc_clocksync
        )
        self._inlet.open_stream(timeout=timeout_s)
        info = streams[0]
        self.name = name
        self.description = (
            f"LSL stream {name!r} (type {info.type()!r}, {info.channel_format()} values, "
            f"from {info.hostname()})"
        )
        # monotonic = LSL local clock - offset (the same clock on Linux: offset ~0)
        self._offset = pylsl.local_clock() - time.monotonic()
        self._stamps: list[float] = []
        self._values: list[int] = []
        self._value = 0
        self.ignored = 0

    def read(self, at: float | None = None) -> int:
        samples, stamps = self._inlet.pull_chunk(timeout=0.0)
        for sample, stamp in zip(samples or [], stamps or [], strict=False):
            try:
                value = float(sample[0])
            except (TypeError, ValueError):
                self.ignored += 1
                continue
            if value != round(value):
                self.ignored += 1
                continue
            self._stamps.append(stamp - self._offset)
            self._values.append(int(value))
        if at is None:
            return self._values[-1] if self._values else self._value
        row = int(np.searchsorted(self._stamps, at, side="right")) - 1
        if row < 0:  # nothing stamped before `at`: the value before the oldest kept
            return self._value
        self._value = self._values[row]
        del self._stamps[:row], self._values[:row]  # frames come in time order
        return self._value

    def close(self) -> None:
        self._inlet.close_stream()


def open_trigger(spec: str) -> TriggerSource:
    """A trigger source from its command-line spec: ``FILE.csv``, ``serial:PORT[@BAUD]``,
    ``parallel:ADDRESS`` or ``lsl:STREAM``. Raises `ConfigError` for an unknown spec."""
    kind, sep, argument = spec.partition(":")
    kind = kind.strip().lower()
    if sep and kind == "serial":
        port, _, baud = argument.rpartition("@") if "@" in argument else (argument, "", "")
        try:
            return SerialTrigger(port, int(baud) if baud else 115200)
        except ValueError:
            raise ConfigError(f"--trigger {spec}: the baud rate {baud!r} is not a number") from None
    if sep and kind == "parallel":
        return ParallelTrigger(argument or "0")
    if sep and kind == "lsl":
        if not argument:
            raise ConfigError("--trigger lsl needs a stream name: lsl:STREAM")
        return LSLTrigger(argument)
    if spec.lower().endswith(".csv"):
        return ScriptTrigger(spec)
    raise ConfigError(
        f"unknown trigger {spec!r}: use FILE.csv, serial:PORT[@BAUD], parallel:ADDRESS "
        "or lsl:STREAM"
    )
