"""`nncli sweep`: a grid of config values × seeds, every trial an ordinary run folder, run by an engine.

The sweep folder (runs/<name>-sweep by default, never an earlier one):

    sweep.json            the plan: config, --set overrides, grid, seeds, metric; what --resume continues
    config.yaml           the base config, resolved
    trials/t000 ...       one run folder per trial (grid point × seed), written by whichever process ran it
    attempts/t000-1.json  where each attempt of a trial ran (host, pid, Ray node), written as it starts
    runs.csv              one row per trial, rewritten whenever a trial ends
    summary.csv           one row per grid point, best first: means ± sd over its seeds
    best.yaml             the best point's resolved config, ready for `nncli train`
    scores.png            the score against each grid key

A trial's score is the best value of the metric column of its history.csv
over its epochs; a point's score is the mean over its seeds. A trial that
diverges or meets bad data is a result (status diverged / failed), not a
retry; one whose worker died is retried by the engine and resumes from its
own last checkpoint; Ctrl-C leaves trials interrupted (checkpoint saved) or
pending, and `--resume` runs exactly those.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .config import dump_yaml, parse_yaml
from .engines import Job, Outcome, RayEngine, SerialEngine
from .errors import ConfigError, DataError, TrainingInterrupted
from .experiment import Experiment, SweepConfig, load_experiment
from .files import atomic_write_text, csv_text, new_run_folder

PLAN_FILE = "sweep.json"
FINISHED = ("ok", "diverged", "failed")  # what --resume keeps; interrupted, lost and pending trials run again
FIGURES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")  # a trial's last epoch, in runs.csv
METRICS = FIGURES  # the history columns a trial can be scored by


@dataclass(frozen=True)
class Trial:
    name: str  # t000, t001, ...: grid points in order, seeds innermost
    point: dict  # grid key -> value text, as given
    seed: int


@dataclass
class Plan:
    """Everything a sweep runs, in plain values (sweep.json)."""

    config: str | dict  # the config file's absolute path, or the config itself (Python API)
    overrides: list  # --set overrides, applied before each point's grid values
    grid: list  # [(key, [value texts])], in flag order
    seeds: list
    metric: str
    mode: str
    cwd: str
    plugins: list
    trials: list = field(default_factory=list)
    cpus_per_trial: int = 1  # BLAS threads of a trial: part of what its figures depend on, so --resume keeps it

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.grid]

    def trial_overrides(self, trial: Trial) -> list[str]:
        return [*self.overrides, *(f"{key}={text}" for key, text in trial.point.items())]

    def to_json(self) -> str:
        return json.dumps({"format": "nncli-sweep", "version": 1, **asdict(self)}, indent=2) + "\n"

    @classmethod
    def read(cls, folder: Path) -> Plan:
        path = folder / PLAN_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{folder}: not a sweep folder (no {PLAN_FILE}); pass the folder `nncli sweep` printed") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: not readable ({exc})") from None
        if not isinstance(raw, dict) or raw.get("format") != "nncli-sweep":
            raise DataError(f"{path}: not an nncli sweep plan")
        try:
            fields_ = {k: raw[k] for k in ("config", "overrides", "grid", "seeds", "metric", "mode", "cwd", "plugins", "cpus_per_trial")}
            plan = cls(**fields_, trials=[Trial(**t) for t in raw["trials"]])
        except (KeyError, TypeError) as exc:
            raise DataError(f"{path}: incomplete sweep plan ({exc})") from None
        plan.grid = [(key, list(texts)) for key, texts in plan.grid]
        return plan


@dataclass
class SweepResult:
    folder: Path
    plan: Plan
    rows: list[dict]  # runs.csv
    summary: list[dict]  # summary.csv, best first
    engine: str  # what ran it, in words
    best: dict | None  # the best point's summary row

    def to_json(self) -> dict:
        return {"folder": str(self.folder), "metric": self.plan.metric, "mode": self.plan.mode, "summary": self.summary, "runs": self.rows}


class Progress:
    """What a sweep reports as it goes; the console's progress display subclasses it."""

    def begin(self, plan: Plan, engine: str, folder: Path, todo: int) -> None: ...

    def trial_started(self, name: str, attempt: int) -> None: ...

    def trial_ended(self, row: dict, best: dict | None) -> None: ...

    def end(self) -> None: ...


# -- the plan ---------------------------------------------------------------------
def split_values(text: str) -> list[str]:
    """V1,V2,... split at the commas outside brackets and quotes, so [16, 16] or {type: sgd} are one value each."""
    values, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    values.append(text[start:].strip())
    return values


def _value_text(value) -> str:
    """A config value as the text a --set takes (YAML), short and read back unchanged."""
    if isinstance(value, str) and value.strip() and parse_yaml(value, "sweep.grid") == value:
        return value
    return json.dumps(value)


def grid_of(flags: Sequence[str], section: SweepConfig | None) -> list[tuple[str, list[str]]]:
    """The grid: the config's sweep.grid, each key's values replaced by a --grid KEY=V1,V2 flag, new keys after."""
    grid: dict[str, list[str]] = {}
    if section is not None and section.grid:
        grid = {key: [_value_text(v) for v in values] for key, values in section.grid.items()}
    seen = set()
    for text in flags:
        key, sep, values = text.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ConfigError(f"expected KEY=V1,V2,..., e.g. optimizer.learning_rate=0.001,0.01; got {text!r}", location="--grid")
        if key in seen:
            raise ConfigError(f"{key} is given twice; list all its values in one --grid {key}=V1,V2,...", location="--grid")
        seen.add(key)
        texts = split_values(values)
        if any(not t for t in texts):
            raise ConfigError(f"{text!r} has an empty value", location="--grid")
        grid[key] = texts
    for key, texts in grid.items():
        if len(set(texts)) != len(texts):
            raise ConfigError(f"{key} lists a value twice ({', '.join(texts)})", location="--grid")
    return list(grid.items())


def default_metric(experiment: Experiment) -> str:
    return "val_loss" if getattr(experiment.data, "validation_split", 0) else "train_loss"


def make_plan(
    config: str | Path | dict,
    overrides: Sequence[str],
    grid: list[tuple[str, list[str]]],
    seeds: int,
    metric: str | None,
    mode: str,
    base: Experiment,
    cpus_per_trial: int = 1,
) -> Plan:
    from . import plugins

    if metric is None:
        metric = default_metric(base)
    if mode == "auto":
        mode = "max" if metric.endswith("accuracy") else "min"
    points = list(itertools.product(*(texts for _, texts in grid)))
    seed_list = [base.seed + i for i in range(seeds)]
    width = max(3, len(str(len(points) * seeds - 1)))
    trials, n = [], 0
    for values in points:
        for seed in seed_list:
            trials.append(Trial(f"t{n:0{width}d}", dict(zip([k for k, _ in grid], values)), seed))
            n += 1
    return Plan(
        config=config if isinstance(config, dict) else str(Path(config).absolute()),
        overrides=list(overrides),
        grid=grid,
        seeds=seed_list,
        metric=metric,
        mode=mode,
        cwd=os.getcwd(),
        plugins=plugins.command_line(),
        trials=trials,
        cpus_per_trial=cpus_per_trial,
    )


def validate(plan: Plan, check_point) -> None:
    """Every trial's config (grid point × seed) is read and checked before anything runs or any folder exists;
    `check_point(experiment)` adds the checks a whole point needs once (data headers, model shapes, memory)."""
    checked = set()
    for trial in plan.trials:
        grid = [f"{key}={text}" for key, text in trial.point.items()]
        experiment = load_experiment(plan.config, plan.overrides, trial.seed, grid=grid)
        if experiment.model.no_epochs is not None:
            raise ConfigError(f"{experiment.model.no_epochs}; a sweep compares runs trained by epochs", ("model", "type"))
        if plan.metric.startswith("val_") and not getattr(experiment.data, "validation_split", 0):
            raise ConfigError(
                f"{plan.metric} needs validation data: set data.validation_split above 0 (or --set it), "
                "or score by --metric train_loss",
                location="--metric",
            )
        key = json.dumps(trial.point, sort_keys=True)
        if key not in checked:
            checked.add(key)
            check_point(experiment)


# -- the trials -------------------------------------------------------------------
def trial_spec(plan: Plan, folder: Path, trial: Trial) -> dict:
    return {
        "name": trial.name,
        "config": plan.config,
        "overrides": plan.trial_overrides(trial),
        "seed": trial.seed,
        "folder": str((folder / "trials" / trial.name).absolute()),
        "attempts": str((folder / "attempts").absolute()),
        "cwd": plan.cwd,
        "plugins": plan.plugins,
        "metric": plan.metric,
        "mode": plan.mode,
    }


def figures(history: list[dict], metric: str, mode: str) -> dict:
    """Score (best metric value over the epochs), its epoch, the last epoch's figures and the training seconds."""
    scored = [(row[metric], row["epoch"]) for row in history if row.get(metric) is not None and math.isfinite(row[metric])]
    best = (min if mode == "min" else max)(scored, key=lambda pair: pair[0]) if scored else (None, None)
    last = history[-1] if history else {}
    return {
        "score": best[0],
        "best_epoch": best[1],
        "epochs": last.get("epoch"),
        **{name: last.get(name) for name in FIGURES},
        "seconds": sum(row["seconds"] for row in history),
    }


def run_columns(plan: Plan) -> tuple[str, ...]:
    return ("trial", "status", *plan.keys, "seed", "score", "best_epoch", "epochs", *FIGURES, "seconds", "attempts", "host", "pid", "error")


def row_of(plan: Plan, trial: Trial, outcome: Outcome) -> dict:
    status = outcome.status
    if status == "error":
        status = "diverged" if outcome.kind == "DivergedError" else "failed"
    row = {"trial": trial.name, "status": status, **trial.point, "seed": trial.seed, "attempts": outcome.attempts or None,
           "host": outcome.host or None, "pid": outcome.pid, "error": " ".join(outcome.error.split()) or None}
    if status == "ok":
        row.update(outcome.value)
    elif status == "interrupted":  # the sweep's own --resume line continues it, not the trial's
        row["error"] = (row["error"] or "").split("; continue with:")[0] or None
    return row


def _number(text: str | None):
    if text in (None, ""):
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def read_rows(folder: Path, plan: Plan) -> dict[str, dict]:
    """runs.csv's rows by trial name (numbers as numbers), for --resume."""
    import csv

    path = folder / "runs.csv"
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    text_columns = {"trial", "status", "host", "error", *plan.keys}
    return {row["trial"]: {k: (v or None) if k in text_columns else _number(v) for k, v in row.items()} for row in rows}


# -- results ------------------------------------------------------------------------
def _mean(values):
    values = [v for v in values if v is not None]
    return float(statistics.fmean(values)) if values else None


def _sd(values):
    values = [v for v in values if v is not None]
    return float(statistics.stdev(values)) if len(values) > 1 else None


def summary_columns(plan: Plan) -> tuple[str, ...]:
    spread = [c for name in ("score", *FIGURES) for c in (name, f"{name}_sd")]
    return ("rank", *plan.keys, "seeds", "ok", *spread, "best_epoch", "seconds")


def summarize(plan: Plan, rows: Sequence[dict]) -> list[dict]:
    """One row per grid point (means and sd over its finished seeds), best score first; unscored points last."""
    out = []
    for values in itertools.product(*(texts for _, texts in plan.grid)):
        point = dict(zip(plan.keys, values))
        mine = [r for r in rows if all(r.get(k) == v for k, v in point.items())]
        ok = [r for r in mine if r["status"] == "ok"]
        row = {**point, "seeds": len(mine), "ok": len(ok)}
        for name in ("score", *FIGURES):
            row[name], row[f"{name}_sd"] = _mean(r.get(name) for r in ok), _sd(r.get(name) for r in ok)
        row["best_epoch"] = _mean(r.get("best_epoch") for r in ok)
        row["seconds"] = _mean(r.get("seconds") for r in ok)
        out.append(row)
    sign = 1 if plan.mode == "min" else -1
    out.sort(key=lambda r: (r["score"] is None, sign * r["score"] if r["score"] is not None else 0))
    for rank, row in enumerate(out, 1):
        row["rank"] = rank
    return out


def best_of(summary: Sequence[dict]) -> dict | None:
    return summary[0] if summary and summary[0]["score"] is not None else None


def write_results(folder: Path, plan: Plan, rows: list[dict], final: bool) -> tuple[list[dict], dict | None]:
    """runs.csv always; summary.csv, best.yaml and scores.png once every trial has ended (final)."""
    atomic_write_text(folder / "runs.csv", csv_text(run_columns(plan), rows))
    summary = summarize(plan, rows)
    best = best_of(summary)
    if not final:
        return summary, best
    atomic_write_text(folder / "summary.csv", csv_text(summary_columns(plan), summary))
    if best is not None:
        point = [f"{key}={best[key]}" for key in plan.keys]
        experiment = load_experiment(plan.config, plan.overrides, plan.seeds[0], grid=point)
        atomic_write_text(folder / "best.yaml", dump_yaml(experiment.resolved()))
    if plan.grid:
        from .plots import plot_sweep

        plot_sweep(plan.grid, rows, summary, plan.metric, plan.mode, folder / "scores.png")
    return summary, best


def run(plan: Plan, folder: Path, engine: SerialEngine | RayEngine, trial_job, progress: Progress | None = None,
        finished: dict[str, dict] | None = None) -> SweepResult:
    """Run the plan's unfinished trials on `engine`, each as `trial_job(trial_spec(...), attempt)` returning its
    figures (api.sweep_trial); write the results; raise TrainingInterrupted after a signal."""
    progress = progress or Progress()
    finished = finished or {}
    trials = {t.name: t for t in plan.trials}
    rows = {t.name: finished.get(t.name) or {"trial": t.name, "status": "pending", **t.point, "seed": t.seed} for t in plan.trials}
    todo = [t for t in plan.trials if t.name not in finished]
    atomic_write_text(folder / "runs.csv", csv_text(run_columns(plan), rows.values()))

    def ended(outcome: Outcome) -> None:
        rows[outcome.key] = row_of(plan, trials[outcome.key], outcome)
        if outcome.traceback:  # a bug, not a result: keep its traceback beside the attempt's record
            atomic_write_text(folder / "attempts" / f"{outcome.key}-{outcome.attempts}.traceback.txt", outcome.traceback)
        _, best = write_results(folder, plan, list(rows.values()), final=False)
        progress.trial_ended(rows[outcome.key], best)

    jobs = [Job(t.name, trial_job, (trial_spec(plan, folder, t),)) for t in todo]
    try:
        outcomes = engine.run(jobs, progress.trial_started, ended, lambda engine_: progress.begin(plan, engine_, folder, len(todo)))
    finally:
        progress.end()
    for outcome in outcomes:
        if outcome.status == "pending":
            rows[outcome.key] = row_of(plan, trials[outcome.key], outcome)
    all_rows = list(rows.values())
    stopped = engine.stopped is not None or any(r["status"] == "interrupted" for r in all_rows)
    summary, best = write_results(folder, plan, all_rows, final=not stopped)
    if stopped:
        signum = engine.stopped or 2
        unfinished = [r for r in all_rows if r["status"] not in FINISHED]
        saved = sum(r["status"] == "interrupted" for r in all_rows)
        raise TrainingInterrupted(
            f"interrupted by {signal.Signals(signum).name}: {len(all_rows) - len(unfinished)} of {len(all_rows)} trials finished, "
            f"{saved} saved mid-run; continue with: nncli sweep --resume {folder}",
            128 + signum,
            None,
        )
    return SweepResult(folder, plan, all_rows, summary, engine.description, best)


def new_folder(plan: Plan, name: str, out: str | Path | None, base: Experiment) -> Path:
    folder = new_run_folder(out if out is not None else Path("runs") / f"{name}-sweep")
    atomic_write_text(folder / "config.yaml", dump_yaml(base.resolved()))
    atomic_write_text(folder / PLAN_FILE, plan.to_json())
    return folder
