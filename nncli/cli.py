"""The command line: parse arguments, call one `api` function, render the result.

`cli_errors()` is the one place that maps failures to exit statuses:
NncliError subclasses print `error: <one line>` on stderr and exit with
their code (2 for bad usage, config, data or checkpoint, or an output
folder that cannot be created; 1 for a diverged run, or a result file that
cannot be written mid-run, e.g. a full disk; 130/143 after SIGINT/SIGTERM
with a checkpoint saved; 141 when stdout is closed early, see below).
Anything else is a bug and keeps its traceback.

`OneLineErrors`, the app's command group, does the same for what happens
before a command runs: a missing argument, an unknown option or a value of
the wrong type is one `error:` line and exit status 2, as for every other
bad input. It also ends the process quietly with status 141 (128 + SIGPIPE)
when stdout is closed early (`nncli eval --json ... | head -c 10`), as Unix
tools do.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

import typer
import typer.core

try:  # recent typer carries its own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover - older typer on click
    from click.exceptions import ClickException, NoArgsIsHelpError

from . import api, console
from .errors import NncliError

SIGPIPE_STATUS = 141  # 128 + SIGPIPE, what a shell reports for a tool killed by a closed pipe


def print_error(message: str) -> None:
    """The one `error: ...` line on stderr (line breaks folded: one failure, one line)."""
    console.stderr.print(f"error: {' '.join(message.splitlines())}", markup=False, highlight=False, soft_wrap=True)


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null, so that nothing still buffered fails again when Python flushes it at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


@contextmanager
def _command_line_faults(command: Callable[[], str]):
    """Click's usage errors as one `error: COMMAND: message` line, with click's wording and exit status.

    `command()` names the command when the error does not carry its context.
    A closed stdout (the reader of a pipe went away) ends the process with
    141 and no message, as Unix tools do.
    """
    try:
        yield
    except NoArgsIsHelpError:  # plain `nncli` prints the help
        raise
    except ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else command()
        close = getattr(exc, "possibilities", None)  # an unknown option's near names, worded as nncli's own hints
        if close:
            either = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}"
            message = f"{exc.message.rstrip('.')}. Did you mean {either}?"
        else:
            message = exc.format_message().rstrip(".")
        if message[:2].istitle():
            message = message[0].lower() + message[1:]  # "No such option" -> "no such option"
        print_error(f"{where}: {message} (see '{where} --help')")
        raise typer.Exit(exc.exit_code) from None
    except BrokenPipeError:
        _stdout_to_devnull()
        raise typer.Exit(SIGPIPE_STATUS) from None


class OneLineErrors(typer.core.TyperGroup):
    """The app's command group: usage errors are one `error:` line (exit 2); a closed stdout exits 141.

    Click would print a usage block and a boxed panel instead. Parsing
    happens in make_context (`nncli --bogus`) and, for each command, inside
    invoke, which also runs the command itself.
    """

    def make_context(self, info_name, args, parent=None, **extra):
        with _command_line_faults(lambda: info_name or self.name):
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx):
        with _command_line_faults(lambda: " ".join(filter(None, (ctx.command_path, ctx.invoked_subcommand)))):
            return super().invoke(ctx)


app = typer.Typer(
    name="nncli",
    cls=OneLineErrors,
    help="Train neural networks written in plain NumPy from YAML experiment configs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

@app.callback()
def _global_options(
    plugin: Optional[list[str]] = typer.Option(
        None,
        "--plugin",
        help="Import this plugin (.py file or module name) first: it registers your own components. Repeatable. "
        "A config can name its own in plugins:; a run trained with --plugin records it in its config.",
    ),
):
    """Train neural networks written in plain NumPy from YAML experiment configs."""
    if plugin:
        from . import plugins

        with cli_errors():
            for spec in plugin:
                plugins.load_command_line(spec)


SetOption = typer.Option(None, "--set", help="Override a config value: KEY.PATH=VALUE (YAML value; list items by index). Repeatable.")
EngineOption = typer.Option(None, "--engine", help="Where the runs of --seeds go: serial (this process, the default) or ray.")
DeviceOption = typer.Option(None, "--device", help="cpu, gpu (CuPy on an NVIDIA GPU) or auto (the GPU when usable); default: training.device, cpu.")
AddressOption = typer.Option(None, "--address", help="A running Ray cluster: HOST:PORT of its head, or auto (implies --engine ray).")


@contextmanager
def cli_errors():
    try:
        yield
    except NncliError as exc:
        print_error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        print_error("interrupted")
        raise typer.Exit(130) from None


def _table_or_json(as_json: bool, result, table, notes) -> None:
    """A result with many rows: one JSON object (--json), or its table and the lines of notes under it."""
    if as_json:
        typer.echo(json.dumps(result.to_json()))
        return
    console.stdout.print(table(result))
    for line in notes(result):
        console.stdout.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
def train(
    config: Path = typer.Argument(..., help="YAML experiment config."),
    set_: Optional[list[str]] = SetOption,
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/<name>; never overwritten)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override the config's seed."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue a run exactly from this checkpoint."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Start a new run from this checkpoint's weights."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Plain one-line-per-epoch progress instead of bars."),
    seeds: int = typer.Option(1, "--seeds", help="Train this many copies with seeds s, s+1, ... (for an ensemble)."),  # api checks >= 1
    engine: Optional[str] = EngineOption,
    address: Optional[str] = AddressOption,
    device: Optional[str] = DeviceOption,
):
    """Train a model from a YAML config; the last line printed is the final checkpoint's path."""
    with cli_errors():
        progress = [console.progress_for(quiet)]
        if seeds == 1 and engine is None and address is None:
            results = [api.train(config, set_ or [], out=out, seed=seed, resume=resume, weights=weights, callbacks=progress,
                                 device=device)]
        else:
            results = api.train_seeds(config, seeds, set_ or [], out=out, seed=seed, resume=resume, weights=weights,
                                      callbacks=progress, engine=engine, address=address, device=device)
    for result in results:
        console.stdout.print(console.train_summary(result))
    if len(results) > 1:
        console.stderr.print("evaluate them (and their ensemble, when they share a test split) with: nncli eval " + " ".join(str(r.final_checkpoint) for r in results))
    for result in results:
        typer.echo(str(result.final_checkpoint))


@app.command("eval")
def eval_(
    checkpoints: list[Path] = typer.Argument(..., help="One or more checkpoints (.npz); several are also evaluated as an ensemble."),
    data_path: Optional[Path] = typer.Option(None, "--data-path", help="Read the data from here instead of the config's data.path."),
    split: Optional[str] = typer.Option(None, "--split", help="test, val or train (default test; a Hopfield network: train, its stored patterns)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per line instead of tables."),
    noise: Optional[float] = typer.Option(None, "--noise", help="Hopfield: flip this fraction of each probe's bits."),
    mask: Optional[str] = typer.Option(None, "--mask", help="Hopfield: lower_half sets the second half of each probe to 0."),
    probes: Optional[int] = typer.Option(None, "--probes", help="Hopfield: this many probes (default one per stored pattern)."),
    device: Optional[str] = DeviceOption,
):
    """Evaluate checkpoints, rebuilt from the checkpoint alone: loss, accuracy, confusion matrix, precision/recall.
    A Hopfield checkpoint is probed with its stored patterns: exact recall, overlap, bit errors, outcomes."""
    with cli_errors():
        report = api.evaluate(checkpoints, split=split, data_path=data_path, noise=noise, mask=mask, probes=probes, device=device)
    if as_json:
        for row in report.to_json():
            typer.echo(json.dumps(row))
        return
    for table in console.eval_tables(report):
        console.stdout.print(table)


@app.command()
def predict(
    checkpoint: Path = typer.Argument(..., help="A checkpoint (.npz)."),
    inputs: list[Path] = typer.Argument(..., help="CSV, IDX or picture (PNG, JPEG, ...) files, or .ts files: as the model's data."),
    out: Optional[Path] = typer.Option(None, "--out", help="CSV to write (default predictions.csv; never overwritten)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per input instead of a table."),
    top: Optional[int] = typer.Option(None, "--top", help="Show only the K most probable labels of each input."),
    no_resize: bool = typer.Option(False, "--no-resize", help="Refuse pictures of another size instead of resizing them."),
    invert: bool = typer.Option(False, "--invert", help="Invert pictures (dark digits on a light background)."),
    device: Optional[str] = DeviceOption,
):
    """Predict new inputs with a trained model: the label and one probability per class (a Hopfield network:
    the state each input settles in), written to a CSV; the last line printed is its path."""
    with cli_errors():
        result = api.predict(checkpoint, inputs, out=out, top=top, resize=not no_resize, invert=invert, device=device)
    if as_json:
        for row in result.to_json():
            typer.echo(json.dumps(row))
    else:
        console.stdout.print(console.prediction_table(result))
    typer.echo(str(result.out))


@app.command()
def recall(
    checkpoint: Path = typer.Argument(..., help="A Hopfield checkpoint (.npz)."),
    index: int = typer.Option(0, "--index", help="Which stored pattern to probe."),
    noise: Optional[float] = typer.Option(None, "--noise", help="Flip this fraction of the probe's bits."),
    mask: Optional[str] = typer.Option(None, "--mask", help="lower_half sets the second half of the probe to 0."),
    update: Optional[str] = typer.Option(None, "--update", help="async or sync (default: the checkpoint's)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default runs/<name>-recall-<index>; never overwritten)."),
):
    """Follow one probe of a Hopfield network sweep by sweep: states.png, energy.csv, overlaps.csv, how it ended."""
    with cli_errors():
        result = api.recall(checkpoint, index=index, noise=noise, mask=mask, update=update, out=out)
    console.stdout.print(console.recall_summary(result))
    for path in result.files:
        typer.echo(str(path))


@app.command()
def capacity(
    config: Path = typer.Argument(..., help="YAML config of a Hopfield network (model.type: hopfield)."),
    set_: Optional[list[str]] = SetOption,
    patterns: str = typer.Option("5:60:5", "--patterns", help="Pattern counts: START:STOP[:STEP] (stop included) or a comma list."),
    trials: int = typer.Option(10, "--trials", help="Random pattern sets per count."),
    noise: float = typer.Option(0.0, "--noise", help="Fraction of flipped bits in the recall probes."),
    rules: Optional[str] = typer.Option(None, "--rules", help="Comma list of rules (default: the config's)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default runs/<name>-capacity; never overwritten)."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON instead of a table."),
):
    """Store more and more random patterns: fixed points, exact recall and overlap against P/N, with the theory lines."""
    with cli_errors():
        result = api.capacity(config, set_ or [], patterns=patterns, trials=trials, noise=noise, rules=rules, out=out)
    if as_json:
        typer.echo(json.dumps(result.to_json()))
        return
    console.stdout.print(console.capacity_table(result))
    typer.echo(str(result.out_dir / "capacity.png"))


@app.command("compare-optimizers")
def compare_optimizers(
    config: Path = typer.Argument(..., help="YAML experiment config with a compare: section."),
    set_: Optional[list[str]] = SetOption,
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default runs/<name>-compare; never overwritten)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary rows as one JSON list instead of tables."),
    seeds: int = typer.Option(1, "--seeds", help="Repeat over N seeds (splits and initialisations); report mean ± sd."),
    engine: Optional[str] = typer.Option(None, "--engine", help="Where the seeds run: serial (this process, the default) or ray (a seed per task)."),
    address: Optional[str] = AddressOption,
    device: Optional[str] = DeviceOption,
):
    """Run the config's optimizers from the same initial weights: loss curves, iterations, evaluations, time, accuracy."""
    with cli_errors():
        result = api.compare_optimizers(config, set_ or [], out=out, seeds=seeds, on_run_end=console.compare_progress(seeds),
                                        engine=engine, address=address, device=device)
    _table_or_json(as_json, result, console.comparison_table, console.comparison_notes)


@app.command()
def sweep(
    config: Optional[Path] = typer.Argument(None, help="YAML experiment config (optionally with a sweep: section)."),
    grid: Optional[list[str]] = typer.Option(None, "--grid", help="KEY.PATH=V1,V2,...: values to try (YAML each; commas inside [] or {} stay). Repeatable: every combination."),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Trials per grid point, with seeds s, s+1, ... (default 1)."),
    set_: Optional[list[str]] = SetOption,
    out: Optional[Path] = typer.Option(None, "--out", help="Sweep folder (default runs/<name>-sweep; never overwritten)."),
    engine: Optional[str] = typer.Option(None, "--engine", help="ray (default where installed) or serial (one trial at a time in this process)."),
    address: Optional[str] = typer.Option(None, "--address", help="A running Ray cluster (HOST:PORT of its head, or auto); default: start Ray here."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Trials at once (default: the CPUs divided by --cpus-per-trial)."),
    cpus_per_trial: Optional[int] = typer.Option(None, "--cpus-per-trial", help="CPUs, and BLAS threads, per trial (default 1)."),
    max_failures: Optional[int] = typer.Option(None, "--max-failures", help="Restarts of a trial whose worker died (default 2); it resumes from its checkpoint."),
    metric: Optional[str] = typer.Option(None, "--metric", help="History column scoring a trial: its best value (default val_loss, or train_loss)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="min or max of the metric (default: max for accuracies)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="A stopped sweep's folder: run only its unfinished trials."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary and every trial as one JSON object instead of tables."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Plain lines per finished trial instead of a live display."),
    device: Optional[str] = DeviceOption,
    gpus_per_trial: Optional[float] = typer.Option(None, "--gpus-per-trial", help="GPUs Ray reserves per trial (with --device gpu); a fraction shares a GPU."),
):
    """Train every grid point × seed, on Ray (here or on a cluster) or in this process; rank the points.
    Writes trials/ (run folders), runs.csv, summary.csv, best.yaml and scores.png; the last line printed is the folder."""
    with cli_errors():
        result = api.sweep(
            config, grid or [], set_ or [], seeds=seeds, out=out, engine=engine, address=address, workers=workers,
            cpus_per_trial=cpus_per_trial, max_failures=max_failures, metric=metric, mode=mode, resume=resume,
            progress=console.SweepProgress(quiet or as_json), device=device, gpus_per_trial=gpus_per_trial,
        )
    _table_or_json(as_json, result, console.sweep_table, console.sweep_notes)
    if not as_json:
        typer.echo(str(result.folder))


@app.command()
def plot(
    runs: list[Path] = typer.Argument(..., help="Run folders (or their history.csv files) to overlay."),
    out: Path = typer.Option(Path("plot.png"), "--out", help="Image to write (a suffix is added rather than overwrite)."),
):
    """Overlay the loss and accuracy curves of several runs; prints the image's path."""
    with cli_errors():
        path = api.plot_runs(runs, out)
    typer.echo(str(path))


@app.command()
def visualize(
    checkpoint: Path = typer.Argument(..., help="A checkpoint (.npz)."),
    what: Optional[list[str]] = typer.Option(
        None, "--what", help="weights, activations, errors, embedding, landscape, states (recurrent) or patterns (Hopfield); "
        "repeatable or a comma list (default: every one that applies)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default ./<name>-visualize; never overwritten)."),
    index: int = typer.Option(0, "--index", help="Which test input (activations, states) or stored pattern (patterns)."),
    samples: int = typer.Option(1000, "--samples", help="Training samples the landscape's loss is measured on."),
    start: Optional[Path] = typer.Option(None, "--from", help="Start the landscape's line at this checkpoint instead of the run's initial weights."),
    data_path: Optional[Path] = typer.Option(None, "--data-path", help="Read the data from here instead of the config's data.path."),
):
    """Draw what a trained model computes: weights, activations, errors, embedding, loss landscape; prints the PNGs' paths."""
    with cli_errors():
        result = api.visualize(checkpoint, what, out=out, index=index, samples=samples, start=start, data_path=data_path)
    for view, note in result.notes.items():
        console.stderr.print(f"{view}: {note}", markup=False, highlight=False, soft_wrap=True)
    for path in result.images:
        typer.echo(str(path))


@app.command()
def report(
    runs: list[Path] = typer.Argument(..., help="Run folders, train --seeds folders, compare-optimizers or sweep folders."),
    out: Path = typer.Option(Path("report.html"), "--out", help="HTML file to write (a suffix is added rather than overwrite)."),
):
    """One self-contained HTML page of runs (config, curves, evaluation, visualisations), comparisons and sweeps; prints its path."""
    with cli_errors():
        result = api.report(runs, out)
    typer.echo(str(result.out))


@app.command()
def export(
    checkpoint: Path = typer.Argument(..., help="A checkpoint (.npz) of a layer-stack model."),
    format: str = typer.Option("onnx", "--format", help="Output format: onnx."),
    out: Optional[Path] = typer.Option(None, "--out", help="File to write (default: the checkpoint's path with .onnx; never overwritten)."),
):
    """Export a checkpoint's model for other runtimes (ONNX: input in nncli's layout, outputs logits and, with cross_entropy, probabilities); prints the file's path."""
    with cli_errors():
        path = api.export_checkpoint(checkpoint, format=format, out=out)
    typer.echo(str(path))


@app.command()
def summary(
    config: Path = typer.Argument(..., help="YAML experiment config."),
    set_: Optional[list[str]] = SetOption,
):
    """Show layers, output shapes and parameter counts, from shapes alone (no data loaded)."""
    with cli_errors():
        result = api.summarize(config, set_ or [])
    console.stdout.print(console.model_summary(result))
    console.stdout.print(console.memory_line(result), markup=False, highlight=False, soft_wrap=True)


@app.command()
def gradcheck(
    config: Path = typer.Argument(..., help="YAML experiment config."),
    set_: Optional[list[str]] = SetOption,
    samples: int = typer.Option(4, "--samples", help="Training samples in the objective."),
    entries: int = typer.Option(20, "--entries", help="Sampled entries per parameter array (all when it has no more)."),
    tolerance: float = typer.Option(1e-6, "--tolerance", help="Largest relative error that passes."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override the config's seed (weights, data split, sampled entries)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object instead of a table."),
):
    """Check backpropagation against finite differences on the configured model (float64): exit 0 when every array passes."""
    from .gradcheck import gradcheck as run_gradcheck

    with cli_errors():
        result = run_gradcheck(config, set_ or [], samples=samples, entries=entries, tolerance=tolerance, seed=seed)
    if as_json:
        typer.echo(json.dumps(result.to_json()))
    else:
        console.stdout.print(console.gradcheck_table(result))
        console.stdout.print(console.gradcheck_note(result), markup=False, highlight=False, soft_wrap=True)
    if not result.passed:
        print_error(result.failure())
        raise typer.Exit(1)


@app.command()
def components(
    kind: Optional[str] = typer.Argument(None, help="layer, activation, loss, optimizer, initializer or data."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the config reference as Markdown tables."),
):
    """List registered components with their options, defaults and descriptions."""
    with cli_errors():
        infos = api.components(kind)
    if markdown:
        typer.echo(console.components_markdown(infos), nl=False)
    else:
        console.stdout.print(console.components_table(infos))


@app.command()
def devices(as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON instead of a table.")):
    """List the devices training can use (--device cpu|gpu|auto): the CPU, and a CUDA GPU through CuPy, or why not."""
    with cli_errors():
        rows = api.devices()
    if as_json:
        typer.echo(json.dumps(rows))
    else:
        console.stdout.print(console.devices_table(rows))


def main() -> None:
    """The `nncli` script and `python -m nncli`."""
    try:
        app()
    finally:  # output still buffered meets a closed pipe here, not in Python's own flush at exit (status 120)
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _stdout_to_devnull()
            sys.exit(SIGPIPE_STATUS)
