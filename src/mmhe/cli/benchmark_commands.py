"""`mmhe benchmark`: train and evaluate baselines on a store, leakage-free and audited;
`mmhe models`: the models it knows, with their modalities, defaults and sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mmhe.cli import app
from mmhe.cli._console import make_console, print_frame

PROTOCOL_HELP = (
    "loso, group_kfold, trial_kfold, leave_stimulus_out or subject_stimulus_kfold "
    "(participants and clips held out together)."
)


def print_results(console: Any, results: Any, title: str) -> None:
    """The paper table for a terminal: columns that hold one value for every row (task,
    protocol, seeds) go to the title; 'complete' and 'audit' become one status column."""
    from mmhe.evaluation.results import paper_table

    table = paper_table(results)
    constant = [c for c in ("task", "protocol", "seeds") if c in table and table[c].nunique() == 1]
    if constant:
        title += " (" + ", ".join(f"{c} {table[c].iloc[0]}" for c in constant) + ")"
    audits = table["audit"] if "audit" in table else ["passed"] * len(table)
    status = [
        "AUDIT FAILED" if audit == "FAILED" else "ok" if done == "yes" else "INCOMPLETE"
        for done, audit in zip(table["complete"], audits, strict=True)
    ]
    table = table.drop(columns=[*constant, "complete", "audit"], errors="ignore")
    table["status"] = status
    table.columns = [c.replace("per-participant", "per person") for c in table.columns]
    print_frame(console, table, title)


def print_tests(console: Any, run_dir: Path) -> None:
    """Print the run's UF1 p-value matrix (paired permutation tests, Holm-adjusted)."""
    import pandas as pd

    from mmhe.evaluation.results import pvalue_matrix

    matrix = pvalue_matrix(pd.read_csv(run_dir / "pairwise.csv"), "uf1")
    if matrix.empty:
        return
    shown = matrix.reset_index().drop(columns=["samples", "control"])
    title = "Paired permutation tests over participants, UF1 (Holm-adjusted p)"
    constant = [c for c in ("task", "protocol") if shown[c].nunique() == 1]
    if constant:
        title += " (" + ", ".join(f"{c} {shown[c].iloc[0]}" for c in constant) + ")"
    shown = shown.drop(columns=constant)
    models = [c for c in shown.columns if c not in ("task", "protocol", "model")]
    shown[models] = shown[models].map(lambda p: "" if pd.isna(p) else f"{p:.3f}")
    print_frame(console, shown, title)


def _overrides(**given: Any) -> dict[str, Any]:
    """The options the user gave (None = not given, so the config's value stays)."""
    return {k: v for k, v in given.items() if v is not None}


@app.command("benchmark")
def benchmark_command(
    ctx: typer.Context,
    store: Path = typer.Argument(..., help="A store written by `mmhe ingest`."),
    out: Path = typer.Option(..., "--out", help="Run directory (re-runs resume)."),
    config: Path | None = typer.Option(None, "--config", help="Benchmark YAML (runs, defaults)."),
    model: list[str] | None = typer.Option(
        None,
        help="A model (see `mmhe models`); repeat to compare several on the same task and "
        "modalities.",
    ),
    task: str = typer.Option("compound", help="compound, emotion7, kind or trial."),
    modality: list[str] = typer.Option(["face"], help="Modality (repeat for fusion)."),
    samples: str = typer.Option("ME", help="ME, MaE or both."),
    protocol: str = typer.Option("loso", help=PROTOCOL_HELP),
    k: int | None = typer.Option(None, min=2, help="Folds of the k-fold protocols (default 5)."),
    epochs: int | None = typer.Option(None, help="Epochs (default: the model's published)."),
    lr: float | None = typer.Option(None, help="Learning rate (default: the model's)."),
    batch_size: int | None = typer.Option(None, help="Batch size (default: the model's)."),
    early_stopping: bool | None = typer.Option(
        None,
        "--early-stopping/--fixed-epochs",
        help="Stop on an inner validation split of training participants (default: fixed).",
    ),
    seed: int | None = typer.Option(None, help="First seed (default 0)."),
    seeds: int | None = typer.Option(None, min=1, help="Repeat every run with N seeds."),
    control: str | None = typer.Option(
        None, help="'shuffled': labels permuted within participants (a chance reference)."
    ),
    impute: bool | None = typer.Option(
        None,
        "--impute/--no-impute",
        help="Score samples without input with the training class frequencies "
        "(default: report them apart).",
    ),
    baselines: bool | None = typer.Option(
        None,
        "--baselines/--no-baselines",
        help="Majority-class and stratified-random rows per task (default: on).",
    ),
    recompute: bool = typer.Option(
        True,
        "--recompute/--no-recompute",
        help="Recompute finished folds whose inputs changed (or refuse, saying what changed).",
    ),
    scheduler: str | None = typer.Option(
        "sync",
        help="'sync' (this process), a Dask scheduler address, or 'local' for a local cluster.",
    ),
    workers: int = typer.Option(2, help="Workers of a local cluster."),
    device: str = typer.Option(
        "auto", help="Where torch models train: auto (CUDA when present), cpu or cuda."
    ),
    models_from: list[str] = typer.Option(
        [],
        "--models-from",
        help="Import this Python module first (repeat); it registers models with "
        "mmhe.models.register.",
    ),
) -> None:
    """Run a config (or one model/task/modality) and print the paper-style table, the
    paired tests between models and the leakage audit.

    With --config, the options given here (--epochs, --lr, --batch-size,
    --early-stopping, --seed, --k, --control; --seeds, --impute, --baselines) override
    the file's runs and settings; --model, --task, --modality, --samples and --protocol
    describe runs without a file and are refused beside --config.
    """
    import importlib

    from pydantic import ValidationError

    from mmhe.cli._options import at_least, choice, choices, output_folder
    from mmhe.cli._options import scheduler as scheduler_value
    from mmhe.errors import ConfigError
    from mmhe.evaluation.device import resolve_device
    from mmhe.evaluation.runner import BenchmarkConfig, _one_line, run_benchmark
    from mmhe.models import list_models
    from mmhe.store import MMHEStore

    if epochs is not None:
        at_least(epochs, 1, "--epochs")
    at_least(workers, 1, "--workers")
    chosen = scheduler_value(scheduler)
    resolve_device(device)  # an unknown or missing device fails before anything is written
    if control is not None:
        choice(control, ("none", "shuffled"), "--control")

    for module in models_from:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"--models-from {module}: cannot import it: {exc}") from exc
    run_options = _overrides(
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        early_stopping=early_stopping,
        seed=seed,
        control=control,
        k=k,
    )
    if config is not None:
        given = [
            f"--{name}"
            for name in ("model", "task", "modality", "samples", "protocol")
            # by name: Typer vendors its own click, whose ParameterSource is another enum
            if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"
        ]
        if given:
            raise typer.BadParameter(
                f"{', '.join(given)} {'describe' if len(given) > 1 else 'describes'} a run "
                "without a file; with --config put them in its runs (or defaults)",
                param_hint="--config",
            )
        bench = BenchmarkConfig.load(config)
        bench = bench.model_copy(update={"runs": [{**run, **run_options} for run in bench.runs]})
    elif model:
        from mmhe.evaluation.datasets import Task
        from mmhe.evaluation.runner import PROTOCOLS

        names = choices(model, list_models(), "--model")
        choice(task, get_args(Task), "--task")
        choice(protocol, PROTOCOLS, "--protocol")
        choice(samples, ("ME", "MaE", "both"), "--samples")
        modalities = choices(modality, ("face", "eeg", "eeg_raw", "physio"), "--modality")
        try:
            bench = BenchmarkConfig(
                runs=[
                    {
                        "model": name,
                        "task": task,
                        "modalities": modalities,
                        "samples": samples,
                        "protocol": protocol,
                        **run_options,
                    }
                    for name in dict.fromkeys(names)
                ]
            )
        except ValidationError as exc:
            raise typer.BadParameter(_one_line(exc), param_hint="--model/--modality") from None
    else:
        raise typer.BadParameter("give --config FILE.yaml or --model NAME")
    try:
        bench = BenchmarkConfig.model_validate(
            bench.model_dump() | _overrides(seeds=seeds, impute=impute, baselines=baselines)
        )
    except ValidationError as exc:
        raise typer.BadParameter(_one_line(exc), param_hint="--seeds/--impute") from None
    store_path = MMHEStore(store).path
    output_folder(out, inputs=[store_path])
    is_run = (out / "config.json").is_file() or (out / "folds").is_dir()
    if not is_run and any(out.iterdir()):
        raise ConfigError(
            f"--out {out} holds other files and is not a benchmark run: give a new folder "
            "(an existing run folder resumes)"
        )
    console = make_console()
    with Progress(
        TextColumn("[bold]benchmark[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task("", total=None)
        results = run_benchmark(
            store,
            bench,
            out,
            scheduler=chosen,
            n_workers=workers,
            device=device,
            recompute=recompute,
            progress=lambda r: progress.update(
                bar,
                advance=1,
                description=f"{r['model']} {r['modalities']} seed {r['seed']} fold {r['fold']}",
            ),
        )
    print_results(console, results, bench.title)
    print_tests(console, out)
    audit_ok = bool(results["audit_passed"].all()) if "audit_passed" in results else False
    console.print(
        f"results: {out / 'results.md'}, {out / 'results.csv'}, {out / 'seeds.csv'}, "
        f"{out / 'participants.csv'}; tests: {out / 'pairwise.csv'}; "
        f"predictions: {out / 'predictions.parquet'}; audit: {out / 'audit.json'}",
        highlight=False,
    )
    if not audit_ok:
        console.print(
            f"[bold red]leakage audit FAILED[/] for some rows: see {out / 'audit.json'}; "
            "do not report these numbers",
            highlight=False,
        )
        raise typer.Exit(1)


def models_table():
    """One row per registry model: name, kind, modalities, input, defaults, source."""
    import pandas as pd

    from mmhe.models import DEFAULT_MEMBERS, INPUT_DESCRIPTIONS, list_models, model_spec

    rows = []
    for name in list_models():
        spec = model_spec(name)
        d = spec.defaults
        if spec.kind == "torch":
            defaults = f"{d.epochs} epochs, batch {d.batch_size}, lr {d.lr:g}, {d.optimizer}"
            defaults += f", wd {d.weight_decay:g}" if d.weight_decay else ""
        elif spec.kind == "ensemble":
            members = ", ".join(f"{m} {n}" for m, n in DEFAULT_MEMBERS.items())
            defaults = f"members' own ({members})"
        else:
            defaults = "fit once per fold"
        if not spec.modalities:
            modalities = "none (chance reference)"
        elif spec.input == "table":
            modalities = "one of " + ", ".join(spec.modalities)
        elif spec.input == "multimodal":
            modalities = "+".join(spec.modalities) + " (any two or more)"
        else:
            modalities = "+".join(spec.modalities)
        rows.append(
            {
                "name": name,
                "kind": spec.kind,
                "modalities": modalities,
                "input": "ignored"
                if not spec.modalities
                else INPUT_DESCRIPTIONS.get(spec.input, spec.input),
                "defaults": defaults,
                "source": spec.paper,
            }
        )
    return pd.DataFrame(rows)


@app.command("models")
def models_command(
    csv: bool = typer.Option(False, "--csv", help="Print CSV instead of a table."),
) -> None:
    """Every model `mmhe benchmark` can train: modalities, input, defaults, source."""
    table = models_table()
    if csv:
        typer.echo(table.to_csv(index=False), nl=False)
        return
    rich_table = Table(title="mmhe models")
    for column in table.columns:
        rich_table.add_column(column)
    for row in table.itertuples(index=False):
        rich_table.add_row(*map(str, row))
    make_console().print(rich_table)
