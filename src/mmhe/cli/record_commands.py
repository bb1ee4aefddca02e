"""`mmhe record`: trigger-gated camera recording into a camera folder."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mmhe.cli import app
from mmhe.cli._console import make_console


def _status(snapshot: dict, duration: float | None) -> Text:
    elapsed = snapshot["elapsed_s"]
    clock = f"{elapsed:6.1f} s" + (f" / {duration:g} s" if duration else "")
    code = snapshot["code"]
    return Text.assemble(
        ("record ", "bold"),
        clock,
        "  marker ",
        (f"{code:>3}" if code else "  -", "bold green" if code else "dim"),
        f"  captured {snapshot['captured']:,}  written {snapshot['written']:,}  ",
        (f"dropped {snapshot['dropped']:,}", "bold red" if snapshot["dropped"] else ""),
        "  ",
        (
            f"camera lost {snapshot['camera_lost']:,}",
            "bold red" if snapshot["camera_lost"] else "",
        ),
        f"  queue {snapshot['queued']}/{snapshot['capacity']}",
    )


@app.command("record")
def record_command(
    out: Path = typer.Argument(..., help="Camera folder to record into (created if needed)."),
    camera: str = typer.Option(
        "simulated", help="simulated | simulated:rgb | opencv:N (or a path/URL) | ximea[:SERIAL]."
    ),
    trigger: str = typer.Option(
        ..., help="FILE.csv (time_s,value) | serial:PORT[@BAUD] | parallel:ADDRESS | lsl:STREAM."
    ),
    fps: float = typer.Option(150.0, help="Frame rate (Hz)."),
    width: int = typer.Option(2048, help="Frame width (px)."),
    height: int = typer.Option(1088, help="Frame height (px)."),
    duration: float | None = typer.Option(
        None,
        help="Stop after this many seconds (default: when the trigger script ends, or "
        "on Ctrl-C / SIGTERM).",
    ),
    lsl: bool = typer.Option(
        False, "--lsl", help="Publish marker and frame-counter LSL streams (for LabRecorder)."
    ),
    rgb: bool = typer.Option(
        False, "--rgb", help="Store demosaiced RGB (3x the bytes) instead of raw Bayer frames."
    ),
    writers: int = typer.Option(2, min=1, max=32, help="Writer threads."),
    buffer_mb: float = typer.Option(1024.0, help="Memory for frames waiting to be written (MB)."),
) -> None:
    """Record frames while the trigger holds a marker > 0; one .tif per frame, named
    YYYY-MM-DD-HH-MM-SS-mmm-CCC-MARKER.tif, and a JSON log. Exit code 1 when any captured
    frame was dropped or a device failed."""
    from mmhe.record import RecordConfig, open_camera, open_trigger, record

    config = RecordConfig(
        duration_s=duration, rgb=rgb, writers=writers, buffer_mb=buffer_mb, lsl=lsl
    )
    console = make_console()
    source = open_camera(camera, width=width, height=height, fps=fps)
    try:
        line = open_trigger(trigger)
    except BaseException:
        source.stop()
        raise
    console.print(f"camera: {source.description}", highlight=False)
    console.print(f"trigger: {line.description}", highlight=False)
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        log = record(
            out,
            source,
            line,
            config,
            progress=lambda snapshot: live.update(_status(snapshot, duration)),
        )
    console.print()
    _print_summary(console, log)
    frames = log["frames"]
    if frames["dropped"] or frames["camera_lost"] or log["errors"]:
        raise typer.Exit(1)


def _print_summary(console, log: dict) -> None:
    frames = log["frames"]
    table = Table(title=f"Recorded into {log['folder']}", title_justify="left")
    for column in ("marker", "segments", "captured", "written", "dropped", "camera lost",
                   "first frame at", "last frame at"):  # fmt: skip
        table.add_column(column, justify="right", no_wrap=True)
    for row in log["codes"]:
        table.add_row(
            str(row["code"]), str(row["segments"]), f"{row['captured']:,}",
            f"{row['written']:,}", f"{row['dropped']:,}", f"{row['camera_lost']:,}",
            (row["first_timestamp"] or "").replace("T", " "),
            (row["last_timestamp"] or "").replace("T", " "),
        )  # fmt: skip
    console.print(table)
    write = log["write"]
    console.print(
        f"stopped by: {log['stopped_by']}; frames stored as {log['camera']['stored_as']}\n"
        f"captured {frames['captured']:,}, written {frames['written']:,}, dropped "
        f"{frames['dropped']:,} (queue full {frames['dropped_queue_full']:,}, write failed "
        f"{frames['dropped_write_failed']:,}), lost by the camera {frames['camera_lost']:,}; "
        f"queue high-water {log['queue']['high_water_frames']} of "
        f"{log['queue']['capacity_frames']} frames; wrote {write['bytes'] / 1e6:,.0f} MB at "
        f"{write['mb_per_s'] or 0:,.0f} MB/s; memory high-water "
        f"{log['memory_high_water_mb']:,.0f} MB; log {log['log']}",
        highlight=False,
    )
    for error in log["errors"]:
        console.print(f"[bold red]error:[/] {error}", highlight=False)
    if log["lsl"]:
        console.print(f"LSL streams: {', '.join(log['lsl']['streams'])}", highlight=False)
