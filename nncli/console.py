"""Terminal output: training progress (Rich bars on a terminal, one plain line per epoch otherwise) and result tables.

With cli.py, the only module that imports rich. Progress and messages go to
stderr; results (tables, JSON, the final checkpoint path) go to stdout.
"""

from __future__ import annotations

import math
import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .api import CapacityResult, ComparisonResult, EvalReport, MemoryReport, ModelSummary, PredictResult, RecallResult, TrainResult
from .compare import RunResult
from .models import human_bytes
from .models.hopfield import OUTCOMES
from .sweeps import Progress as SweepEvents
from .sweeps import SweepResult
from .registry import REQUIRED, ComponentInfo
from .training import Callback, Fit



class _Console(Console):
    """A Rich console that lets a closed pipe raise BrokenPipeError, for the CLI to end with 141.

    Rich's default exits with status 1 instead, as if the command had failed.
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


stderr = _Console(stderr=True, highlight=False, soft_wrap=True)
stdout = _Console(highlight=False)
if not stdout.is_terminal:
    stdout.width = 160  # tables for logs and pipes: wide enough for a 10-class confusion matrix


def _num(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _sig(value) -> str:
    """4 significant digits: scores of a sweep span orders of magnitude."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}"


def _pct(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.2f}%"


def epoch_line(fit: Fit, row: dict) -> str:
    parts = [
        f"{fit.unit} {row['epoch']}/{fit.epochs}",
        f"loss {_num(row['train_loss'])}",
    ]
    if not fit.regression:  # a regression has no accuracy
        parts.append(f"acc {_pct(row['train_accuracy'])}")
    if row["val_loss"] is not None:
        parts.append(f"val_loss {_num(row['val_loss'])}")
        if not fit.regression:
            parts.append(f"val_acc {_pct(row['val_accuracy'])}")
    lr = row["learning_rate"]
    if lr is not None and not math.isnan(lr):
        parts.append(f"lr {lr:.3g}")
    seconds = row["seconds"]
    parts.append(f"{seconds:.1f}s ({fit.samples / seconds:,.0f} samples/s)" if seconds > 0 else f"{seconds:.1f}s")
    if fit.improved:
        parts.append("*best")
    return "  ".join(parts)


class PlainProgress(Callback):
    """One line per epoch on stderr (for logs, CI, and --quiet); a line as a large data file starts and ends loading."""

    def __init__(self, console: Console = stderr):
        self.console = console
        self._load_started: float | None = None

    def on_load_progress(self, what, done, total):
        if done == 0:
            self._load_started = time.perf_counter()
            self.console.print(f"{what} ({human_bytes(total) if total > 1 << 20 else f'{total:,} rows'}) ...", markup=False, highlight=False, soft_wrap=True)
        elif done >= total and self._load_started is not None:
            seconds = time.perf_counter() - self._load_started
            self.console.print(f"{what}: done in {seconds:.1f}s", markup=False, highlight=False, soft_wrap=True)
            self._load_started = None

    def on_epoch_end(self, trainer, row):
        self.console.print(epoch_line(trainer, row), markup=False, highlight=False, soft_wrap=True)


class RichProgress(Callback):
    """Epoch and batch bars with loss, accuracy, samples/s and ETA, for an interactive terminal."""

    REFRESH = 0.1  # seconds between bar updates: redrawing every batch would cost more than the batch

    def __init__(self, console: Console = stderr):
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[stats]}"),
            console=console,
            transient=True,
        )
        self._last = 0.0
        self._loading = None  # the load bar's task, while a large file is read

    def on_load_progress(self, what, done, total):
        if self._loading is None:
            if done >= total:
                return
            self.progress.start()
            self._loading = self.progress.add_task(what, total=total, stats="")
        self.progress.update(self._loading, completed=done)
        if done >= total:
            self.progress.remove_task(self._loading)
            self.progress.stop()
            self._loading = None

    def on_train_begin(self, trainer):
        self.progress.start()
        self.epochs = self.progress.add_task("epochs", total=trainer.epochs, completed=trainer.state.epoch, stats="")
        self.batches = self.progress.add_task(
            "batches", total=trainer.batches_per_epoch, completed=trainer.state.batch, stats=""
        )
        self._started = time.perf_counter()

    def on_batch_end(self, trainer):
        now = time.perf_counter()
        if now - self._last < self.REFRESH:
            return
        self._last = now
        s = trainer.state
        rate = s.seen / s.epoch_seconds if s.epoch_seconds > 0 else 0.0
        acc = "" if trainer.regression else f"  acc {100 * s.correct / s.seen:.2f}%"
        stats = f"loss {s.loss_sum / s.seen:.4f}{acc}  {rate:,.0f} samples/s"
        self.progress.update(self.batches, completed=s.batch, stats=stats)

    def on_epoch_end(self, trainer, row):
        self.progress.console.print(epoch_line(trainer, row), markup=False, highlight=False)
        self.progress.update(self.epochs, completed=trainer.state.epoch)
        self.progress.reset(self.batches, total=trainer.batches_per_epoch, stats="")

    def on_train_end(self, trainer):
        self.progress.stop()


def progress_for(quiet: bool) -> Callback:
    """Rich bars on a terminal, plain epoch lines when stderr is not one or with --quiet."""
    return PlainProgress() if quiet or not stderr.is_terminal else RichProgress()


def _point(row: dict, keys) -> str:
    return ", ".join(f"{key}={row[key]}" for key in keys)


def trial_line(row: dict, keys, metric: str) -> str:
    """One finished trial: name, status, grid values and seed, score, where it ran."""
    parts = [row["trial"], f"{row['status']:<11}", _point(row, keys) or "(no grid)", f"seed {row['seed']}"]
    if row["status"] == "ok":
        parts.append(f"{metric} {_sig(row.get('score'))} (epoch {row.get('best_epoch')})  {row.get('seconds', 0):.1f}s")
    elif row.get("error"):
        parts.append(row["error"][:160])
    if row.get("attempts") and row["attempts"] > 1:
        parts.append(f"attempt {row['attempts']}")
    if row.get("host"):
        parts.append(f"[{row['host']} pid {row['pid']}]")
    return "  ".join(parts)


class SweepProgress(SweepEvents):
    """A sweep's progress on stderr: a live line (done, running, failed; the best so far) on a terminal,
    one plain line per finished trial otherwise (logs, CI, --quiet)."""

    def __init__(self, quiet: bool, console: Console = stderr):
        self.console = console
        self.live = not quiet and console.is_terminal
        self.running: set[str] = set()
        self.done = self.failed = 0

    def begin(self, plan, engine, folder, todo):
        self.keys, self.metric, self.total = plan.keys, plan.metric, todo
        self.console.print(f"sweep {folder}: {todo} trial(s) to run, {len(plan.trials)} in all; {engine}", markup=False, highlight=False)
        if self.live:
            self.progress = Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                     TextColumn("{task.fields[stats]}"), console=self.console, transient=True)
            self.progress.start()
            self.task = self.progress.add_task("trials", total=todo, stats="")

    def trial_started(self, name, attempt):
        self.running.add(name)
        if attempt > 1:
            self.console.print(f"{name}  worker lost: attempt {attempt}, resuming from its last checkpoint", markup=False, highlight=False)
        self._update(None)

    def trial_ended(self, row, best):
        self.running.discard(row["trial"])
        self.done += 1
        self.failed += row["status"] not in ("ok", "interrupted", "pending")
        print_ = self.progress.console.print if self.live else self.console.print
        print_(trial_line(row, self.keys, self.metric), markup=False, highlight=False, soft_wrap=True)
        self._update(best)

    def _update(self, best):
        if not self.live:
            return
        lead = f"  best {_sig(best['score'])} ({_point(best, self.keys)})" if best else ""
        self.progress.update(self.task, completed=self.done, stats=f"{len(self.running)} running, {self.failed} failed{lead}")

    def end(self):
        if getattr(self, "progress", None) is not None:
            self.progress.stop()


def sweep_table(result: SweepResult) -> Table:
    """summary.csv as a table: one row per grid point, best first."""
    plan = result.plan
    sense = "lower" if plan.mode == "min" else "higher"
    table = Table(title=f"sweep {result.folder}: best {plan.metric} per trial ({sense} is better), mean ± sd over seeds", title_justify="left")
    for column in ("#", *plan.keys, "ok/seeds", plan.metric, "best epoch", "val acc", "seconds"):
        table.add_column(column, justify="left" if column in plan.keys else "right")
    accuracy = any(row.get("val_accuracy") is not None for row in result.summary)
    for row in result.summary:
        table.add_row(
            str(row["rank"]), *(str(row[k]) for k in plan.keys), f"{row['ok']}/{row['seeds']}",
            _pm(row["score"], row["score_sd"], _sig),
            "-" if row["best_epoch"] is None else f"{row['best_epoch']:.1f}",
            _pm(row["val_accuracy"], row["val_accuracy_sd"], _pct) if accuracy else "-",
            "-" if row["seconds"] is None else f"{row['seconds']:.1f}",
        )
    return table


def sweep_notes(result: SweepResult) -> list[str]:
    rows = result.rows
    notes = []
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        notes.append(f"{len(bad)} trial(s) did not finish ok: " + ", ".join(f"{r['trial']} {r['status']}" for r in bad[:10]))
    if result.best is not None:
        notes.append(f"best point: {_point(result.best, result.plan.keys) or '(no grid)'}; its config: {result.folder / 'best.yaml'}")
    notes.append(f"{result.engine}; every trial: {result.folder / 'runs.csv'}")
    return notes


# -- result tables ---------------------------------------------------------------
def _show_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} = {_show_value(v)}" for k, v in value.items())
    return f"{value:,}" if isinstance(value, int) else str(value)


def devices_table(rows: list[dict]) -> Table:
    """`nncli devices`: each device, whether training can use it, and what it is or why not."""
    table = Table(title="devices (--device cpu|gpu|auto)", title_justify="left")
    for column in ("device", "usable", "what it is, or why not"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["device"], "yes" if row["usable"] else "no", escape(row["description"]))
    return table


def train_summary(result: TrainResult) -> Table:
    s = result.state
    last = s.history[-1] if s.history else {}
    table = Table(title=f"run {result.run_dir}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("parameters", f"{result.num_params:,}")
    for key, value in result.storage.items():  # what a one-shot fit stored (a Hopfield network's N, P, P/N, capacity)
        table.add_row(key, _show_value(value))
    if not result.storage:
        table.add_row("epochs", f"{s.epoch}/{result.epochs}" + (f" (stopped: {s.stop_reason})" if s.stop_reason else ""))
    table.add_row("time", f"{sum(r['seconds'] for r in s.history):.1f}s")
    if result.load_seconds is not None:
        table.add_row("data load", f"{result.load_seconds:.1f}s")
    if result.r2:  # a regression: R² (final weights) instead of accuracy
        table.add_row("train loss / R²", f"{_num(last.get('train_loss'))} / {_num(result.r2.get('train'))}")
        if last.get("val_loss") is not None:
            table.add_row("val loss / R²", f"{_num(last.get('val_loss'))} / {_num(result.r2.get('val'))}")
    elif not result.storage:
        table.add_row("train loss / acc", f"{_num(last.get('train_loss'))} / {_pct(last.get('train_accuracy'))}")
    if last.get("val_loss") is not None and not result.r2:
        table.add_row("val loss / acc", f"{_num(last.get('val_loss'))} / {_pct(last.get('val_accuracy'))}")
    if last.get("val_loss") is not None:
        table.add_row("best val loss", f"{_num(s.best_val_loss)} (epoch {s.best_epoch})")
    if result.best_checkpoint is not None:
        table.add_row("best checkpoint", str(result.best_checkpoint))
    table.add_row("last checkpoint", str(result.final_checkpoint))
    return table


def memory_table(report: EvalReport) -> Table:
    """Hopfield probes: one row per checkpoint."""
    first = report.models[0].evaluation
    how = f"{first.noise:.0%} of bits flipped" if first.noise else (f"{first.mask} masked" if first.mask else "clean probes")
    table = Table(title=f"recall of the stored patterns ({how})", title_justify="left")
    columns = ("model", "probes", "exact recall", "overlap m", "bit errors", *OUTCOMES, "sweeps")
    for col in columns:
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in report.models:
        e = r.evaluation
        table.add_row(r.name, str(e.n), _pct(e.accuracy), f"{e.overlap:.4f}", _pct(e.bit_error_rate),
                      *[str(e.outcomes[name]) for name in OUTCOMES], f"{e.sweeps:.1f}")
    return table


def eval_tables(report: EvalReport) -> list[Table]:
    if isinstance(report.models[0], MemoryReport):
        return [memory_table(report)]
    all_reports = [*report.models, *(r for r in (report.ensemble, report.vote) if r is not None)]
    if report.regression:
        return regression_tables(report, all_reports)
    overview = Table(title=f"evaluation on the {all_reports[0].split} split", title_justify="left")
    for col in ("model", "n", "loss", "accuracy", "majority baseline"):
        overview.add_column(col, justify="left" if col == "model" else "right")
    for r in all_reports:
        overview.add_row(r.name, str(r.evaluation.n), _num(r.evaluation.loss), _pct(r.evaluation.accuracy), _pct(r.baseline))
    _spread_caption(overview, report, "accuracy", _pct)
    tables = [overview]
    for r in all_reports:
        classes = [str(c) for c in r.classes]
        cm = Table(title=f"{r.name}: confusion matrix (rows = true class) and per-class metrics", title_justify="left")
        cm.add_column("true \\ pred", style="bold")
        for c in classes:
            cm.add_column(c, justify="right")
        cm.add_column("precision", justify="right")
        cm.add_column("recall", justify="right")
        precision, recall = r.evaluation.precision, r.evaluation.recall
        for i, c in enumerate(classes):
            cm.add_row(c, *[str(v) for v in r.evaluation.confusion[i]], _pct(float(precision[i])), _pct(float(recall[i])))
        tables.append(cm)
    return tables


def _spread_caption(table: Table, report: EvalReport, metric: str, show) -> None:
    """Several models: their metric's mean ± sd (and why there is no ensemble, if so) under the overview."""
    if len(report.models) > 1:
        mean, sd = report.accuracy_spread
        table.caption = f"{metric} of the {len(report.models)} models: mean {show(mean)} ± {show(sd)} (sd)"
        if report.note:
            table.caption += f"; {report.note}"
        table.caption_justify = "left"


REGRESSION_COLUMNS = (("MSE", "mse"), ("RMSE", "rmse"), ("MAE", "mae"), ("R²", "r2"), ("baseline MSE", "baseline_mse"), ("baseline R²", "baseline_r2"))


def regression_tables(report: EvalReport, all_reports) -> list[Table]:
    """A regression's evaluation: loss, MSE, RMSE, MAE, R² and the training-mean baseline (target units);
    per target too when there are several."""
    overview = Table(title=f"evaluation on the {all_reports[0].split} split (target units; baseline: predict the training mean)", title_justify="left")
    for col in ("model", "n", "loss", *(c for c, _ in REGRESSION_COLUMNS)):
        overview.add_column(col, justify="left" if col == "model" else "right")
    for r in all_reports:
        m = r.evaluation.regression
        overview.add_row(r.name, str(r.evaluation.n), _num(r.evaluation.loss), *(_num(getattr(m, key)) for _, key in REGRESSION_COLUMNS))
    _spread_caption(overview, report, "R²", lambda v: f"{v:.4f}")
    tables = [overview]
    targets = all_reports[0].targets
    if len(targets) > 1:
        for r in all_reports:
            per = Table(title=f"{r.name}: per target", title_justify="left")
            for col in ("target", *(c for c, _ in REGRESSION_COLUMNS)):
                per.add_column(col, justify="left" if col == "target" else "right")
            m = r.evaluation.regression
            for i, name in enumerate(targets):
                per.add_row(name, *(_num(float(m.per_target[key][i])) for _, key in REGRESSION_COLUMNS))
            tables.append(per)
    return tables


def model_summary(summary: ModelSummary) -> Table:
    trained = f"loss {summary.loss}, optimizer {summary.optimizer}" if summary.loss is not None else f"model {summary.kind}"
    table = Table(title=f"{summary.name}: input {summary.input_shape}, {trained}", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("layer")
    table.add_column("output shape")
    table.add_column("params", justify="right")
    for row in summary.rows:
        table.add_row(str(row.index), row.layer, str(row.output_shape), f"{row.params:,}")
    table.add_section()
    table.add_row("", "total", "", f"{summary.total_params:,}")
    return table


def memory_line(summary: ModelSummary) -> str:
    """What training the summarised model needs, by part, against the memory available now."""
    need = summary.memory
    parts = ", ".join(f"{name} {human_bytes(size)}" for name, size in need.parts.items())
    available = f"; {human_bytes(summary.available)} available" if summary.available is not None else ""
    fits = " (does not fit)" if summary.available is not None and need.total > summary.available else ""
    return f"training needs about {human_bytes(need.total)} ({parts}){available}{fits}"


def components_table(infos: list[ComponentInfo]) -> Table:
    table = Table(show_lines=False)
    for col in ("kind", "name", "options (default)", "description"):
        table.add_column(col, overflow="fold")
    for info in infos:
        options = ", ".join(
            f"{o.name}" + ("" if o.default is REQUIRED else f"={o.default!r}".replace("'", "")) for o in info.options
        )
        name = info.name + (f" ({', '.join(info.aliases)})" if info.aliases else "")
        summary = f"[plugin {info.origin}] {info.summary}" if info.origin else info.summary
        table.add_row(info.kind, name, options or "-", summary)
    return table


def gradcheck_table(result) -> Table:
    """`nncli gradcheck`: one row per parameter array and the input, worst relative error and status."""
    table = Table(title=f"{result.name}: backprop against central differences ({result.samples} samples, tolerance {result.tolerance:g})")
    for col, justify in (("layer", "left"), ("array", "left"), ("checked", "right"), ("skipped", "right"), ("worst rel. error", "right"), ("status", "left")):
        table.add_column(col, justify=justify)
    for row in result.rows:
        worst = "-" if row.checked == 0 else f"{row.worst:.2e}"
        checked = f"{row.checked}/{row.size}"
        status = {"ok": "[green]ok[/green]", "FAIL": "[bold red]FAIL[/bold red]"}.get(row.status, f"[yellow]{row.status}[/yellow]")
        table.add_row(row.layer, row.array, checked, str(row.skipped), worst, status)
    return table


def gradcheck_note(result) -> str:
    skipped = sum(r.skipped for r in result.rows)
    line = f"objective {result.loss:.6g}; {result.seconds:.1f} s"
    if skipped:
        line += f"; {skipped} entries skipped at kinks (a ReLU input crossing 0 or a max-pool winner changing within ±2h: not checkable)"
    return line


def components_markdown(infos: list[ComponentInfo]) -> str:
    """The config reference in Markdown, one table per kind (README.md embeds it; a test keeps it current)."""
    lines: list[str] = []
    kind = None
    for info in infos:
        if info.kind != kind:
            kind = info.kind
            lines += ["", f"#### {kind}", "", "| name | options (type = default) | description |", "| --- | --- | --- |"]
        options = "<br>".join(
            f"`{o.name}` ({o.type.replace('|', '/')}" + (")" if o.default is REQUIRED else f" = `{_yaml_value(o.default)}`)")
            + (f": {o.help.replace('|', '/')}" if o.help else "")
            for o in info.options
        )
        aliases = f" (also {', '.join(f'`{a}`' for a in info.aliases)})" if info.aliases else ""
        lines.append(f"| `{info.name}`{aliases} | {options or '-'} | {info.summary.replace('|', '/')} |")
    return "\n".join(lines).strip() + "\n"


def _yaml_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- compare-optimizers --------------------------------------------------------------
STOP_REASONS = {
    "gradient_tolerance": "max|∇f| ≤ tol",
    "change_tolerance": "|Δf| ≤ tol",
    "max_iterations": "iteration budget",
    "diverged": "diverged",
}


def _stop(reason: str) -> str:
    """'gradient_tolerance ×3, max_iterations ×2' -> 'max|∇f| ≤ tol ×3, iteration budget ×2'."""
    shown = []
    for part in reason.split(","):
        key, sep, count = part.strip().partition(" ×")
        shown.append(STOP_REASONS.get(key, key) + (f" ×{count}" if sep else ""))
    return ", ".join(shown)


def compare_progress(seeds: int = 1, console: Console = stderr):
    """`on_run_end` for api.compare_optimizers: one plain line per finished run, on stderr."""

    def report(run: RunResult) -> None:
        seed = f"seed {run.seed}  " if seeds > 1 else ""
        console.print(
            f"{seed}{run.optimizer:<12} {run.iterations:>6} iterations  loss {run.final_loss:.10f}  "
            f"{run.seconds:.3f}s  {_stop(run.stop_reason)}",
            markup=False,
            highlight=False,
        )

    return report


def _pm(mean, sd, fmt, sd_fmt=None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    text = fmt(mean)
    return text if sd is None else f"{text} ± {(sd_fmt or fmt)(sd)}"


def _count(value) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def comparison_table(result: ComparisonResult) -> Table:
    c = result.comparison
    seeds = len(c.seeds)
    title = (
        f"{c.name}: {c.num_params:,} parameters, {c.n_train} training / {c.n_test} test rows, "
        f"every optimizer from the same initial weights"
        + (f"; mean ± sd over {seeds} seeds" if seeds > 1 else "")
    )
    table = Table(title=title, title_justify="left")
    regression = any(r.train_r2 is not None for r in c.rows)
    scores = ("train R²", "test R²") if regression else ("train acc", "test acc")
    for name in ("optimizer", "schedule", "final loss", "gap to best", *scores, "iterations", "epochs", "f evals", "g evals", "seconds", "stopped by"):
        table.add_column(name, justify="left" if name in ("optimizer", "schedule", "stopped by") else "right")
    previous = None
    for row in c.rows:
        if previous is not None and row.second_order != previous:
            table.add_section()
        previous = row.second_order
        table.add_row(
            row.optimizer,
            row.schedule,
            _pm(row.final_loss, row.final_loss_sd, lambda v: f"{v:.8f}", lambda v: f"{v:.2g}"),
            f"{c.gap(row.optimizer):.1e}",
            *((_pm(row.train_r2, row.train_r2_sd, lambda v: f"{v:.4f}"), _pm(row.test_r2, row.test_r2_sd, lambda v: f"{v:.4f}"))
              if regression else
              (_pm(row.train_accuracy, row.train_accuracy_sd, _pct), _pm(row.test_accuracy, row.test_accuracy_sd, _pct))),
            _pm(row.iterations, row.iterations_sd, _count),
            f"{row.epochs:,.1f}",
            _count(row.function_evaluations),
            _count(row.gradient_evaluations),
            _pm(row.seconds, row.seconds_sd, lambda v: f"{v:.3f}"),
            _stop(row.stop_reason),
        )
    return table


def comparison_notes(result: ComparisonResult) -> list[str]:
    """Context printed under the table: baseline, agreement of the second-order methods, what the columns mean."""
    c = result.comparison
    notes = []
    if c.baselines and c.baselines[0].train_r2 is not None:  # a regression
        test_r2 = [b.test_r2 for b in c.baselines if b.test_r2 is not None]
        test = f", test R² {sum(test_r2) / len(test_r2):.4f}" if test_r2 else ""
        notes.append(f"baseline (always predict the training mean): train R² 0{test}; R² = 1 − SSE/SST on each split")
    else:
        train_acc = [b.train_accuracy for b in c.baselines]
        test_acc = [b.test_accuracy for b in c.baselines if b.test_accuracy is not None]
        labels = sorted({str(b.label) for b in c.baselines})
        test = f", test {_pct(sum(test_acc) / len(test_acc))}" if test_acc else ""
        notes.append(f"majority-class baseline (always predict {' / '.join(labels)}): train {_pct(sum(train_acc) / len(train_acc))}{test}")
    spread = c.second_order_spread
    if spread is not None:
        names = ", ".join(r.optimizer for r in c.rows if r.second_order)
        notes.append(f"second-order methods ({names}) agree on the final loss to {spread:.1e}")
    s = c.settings
    batch = s.batch_size or result.experiment.training.batch_size
    notes.append(
        f"iteration = one full-batch step, or one mini-batch update (batch {batch}); budget {s.max_iterations:,}; "
        f"gap to best = final loss minus the lowest final loss of any optimizer; f/g evals = objective calls whose "
        f"loss/gradient the method used (mini-batch calls for mini-batch methods); epochs = data passes they cost; "
        f"seconds = the method's own work"
    )
    training = result.experiment.training
    unused = [name for name, present in (("training.early_stopping", training.early_stopping is not None),
                                         ("training.log_gradients", training.log_gradients)) if present]  # fmt: skip
    notes.append(
        "first-order runs train as `nncli train` does (schedule, clipping, augmentation); minimisers take none of them"
        + (f"; {' and '.join(unused)} do not apply: a run stops by the rules above" if unused else "")
    )
    notes.append(f"wrote {result.out_dir}/summary.csv, runs.csv, curves.csv, curves.png")
    return notes


def recall_summary(result: RecallResult) -> Table:
    table = Table(title=f"recall of pattern {result.index}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("ended", result.outcome)
    table.add_row("sweeps", str(result.sweeps))
    table.add_row("energy", " → ".join(f"{e:.4g}" for e in (result.energy if len(result.energy) <= 8 else [*result.energy[:3], result.energy[-1]])))
    table.add_row("final overlap m", f"{result.overlap:.4f}")
    table.add_row("folder", str(result.out_dir))
    return table


def capacity_table(result: CapacityResult) -> Table:
    how = f"{result.noise:.0%} flipped bits" if result.noise else "clean probes"
    table = Table(title=f"capacity, N = {result.neurons} (recall from {how})", title_justify="left")
    for col in ("rule", "P", "P/N", "trials", "fixed points", "exact recall", "overlap m"):
        table.add_column(col, justify="left" if col == "rule" else "right")
    for r in result.rows:
        table.add_row(r["rule"], str(r["patterns"]), f"{r['load']:.3f}", str(r["trials"]), _pct(r["fixed_point_fraction"]),
                      _pct(r["exact_recall"]), f"{r['mean_overlap']:.3f}")
    theory = "; ".join(f"{rule}: " + ", ".join(f"{name} = {value:.1f}" for name, value in named.items()) for rule, named in result.theory.items())
    table.caption = f"theoretical capacity (patterns): {theory}"
    table.caption_justify = "left"
    return table


def prediction_table(result: PredictResult, shown: int = 50) -> Table:
    """The first `shown` predictions: label and the most probable labels (or a Hopfield recall)."""
    table = Table(title=f"predictions ({len(result.rows):,} inputs; all in {result.out})", title_justify="left")
    rows = result.to_json(limit=shown)
    if result.targets is not None:
        table.add_column("input")
        for t in result.targets:
            table.add_column(t, justify="right")
        for r in rows:
            table.add_row(r["input"], *[f"{r['prediction'][t]:.6g}" for t in result.targets])
    elif not result.classes:
        for col in ("input", "nearest stored pattern", "overlap m", "outcome", "sweeps"):
            table.add_column(col, justify="left" if col in ("input", "outcome") else "right")
        for r in rows:
            table.add_row(r["input"], str(r["nearest"]), f"{r['overlap']:.3f}", r["outcome"], str(r["sweeps"]))
    else:
        k = min(result.top or 3, len(result.classes))
        table.add_column("input")
        table.add_column("label", justify="right")
        table.add_column(f"top {k} (probability)")
        for r in rows:
            ranked = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:k]
            table.add_row(r["input"], str(r["label"]), ", ".join(f"{label} {p:.3f}" for label, p in ranked))
    if len(result.rows) > shown:
        table.caption = f"… {len(result.rows) - shown:,} more in the CSV"
        table.caption_justify = "left"
    return table
