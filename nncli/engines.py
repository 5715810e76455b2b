"""Where independent jobs run: one after another in this process (serial), or on Ray workers (ray).

A job is a module-level function and its arguments. `nncli sweep`, `train
--seeds` and `compare-optimizers --seeds` hand their trials to an engine and
get one `Outcome` per job, whichever engine ran it. A job's result depends on
its arguments only (its seeds, its config, and `threads` BLAS threads, which
the engine sets in both engines), so the two engines give the same results
and `serial` is the reference `ray` is tested against.

What every engine promises:
- a job's own failure (an exception in it: bad data, a diverged run) is its
  result, never retried;
- a job whose worker process or node dies (ray) is started again, up to
  `max_failures` times, with attempt = 2, 3, ...; the job resumes from its own
  checkpoint (its function gets the attempt number);
- SIGINT or SIGTERM on the driver starts no new job and asks the running
  ones to stop. A job that trains runs inside nncli's StopSignals, which turns
  the signal into "finish the batch, save a checkpoint, stop"; on Ray,
  `ray.cancel` delivers SIGINT to the job's main thread, so the same happens
  there. `run()` then returns, with `stopped` holding the signal's number.

Ray is imported only here, and only when the ray engine runs.
"""

from __future__ import annotations

import os
import signal
import socket
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, DivergedError, NncliError, TrainingInterrupted, UsageError
from .training import StopSignals

ENGINES = ("serial", "ray")
RAY_INSTALL_HINT = "pip install 'nncli[sweep]' (or pip install ray)"


@dataclass(frozen=True)
class Job:
    """`call(*args, attempt=N)`, known to the driver by `key` (a trial's name)."""

    key: str
    call: Callable[..., Any]
    args: tuple = ()


@dataclass
class Outcome:
    """How a job ended.

    status: ok (value holds what it returned), error (its own failure: `error`
    is the one-line message, `kind` the exception's class name, `exit_code` the
    status nncli exits with for it), interrupted (stopped by a signal, its
    checkpoint saved), lost (its worker died more often than max_failures
    allows) or pending (never started: the sweep was stopped first).
    """

    key: str
    status: str
    value: Any = None
    error: str = ""
    kind: str = ""
    exit_code: int = 0
    attempts: int = 0
    host: str = ""
    pid: int | None = None
    traceback: str = ""


def execute(call: Callable[..., Any], args: tuple, attempt: int, threads: int | None) -> dict:
    """Run one job where the engine placed it and report how it ended, as plain values (nothing to unpickle)."""
    where = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        if threads is None:
            value = call(*args, attempt=attempt)
        else:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=threads):
                value = call(*args, attempt=attempt)
    except TrainingInterrupted as exc:
        return {**where, "status": "interrupted", "error": str(exc), "kind": type(exc).__name__, "exit_code": exc.exit_code}
    except NncliError as exc:
        return {**where, "status": "error", "error": str(exc), "kind": type(exc).__name__, "exit_code": exc.exit_code}
    except Exception as exc:  # a bug in a job: its traceback goes back to the driver
        return {
            **where, "status": "error", "error": f"{type(exc).__name__}: {exc}", "kind": type(exc).__name__,
            "exit_code": 1, "traceback": traceback.format_exc(),
        }
    return {**where, "status": "ok", "value": value}


def _outcome(job: Job, attempt: int, report: dict) -> Outcome:
    return Outcome(key=job.key, attempts=attempt, **report)


class SerialEngine:
    """Jobs one after another in this process: no dependency, the reference for the other engines."""

    name = "serial"

    def __init__(self, threads: int | None = None):
        self.threads = threads
        self.stopped: int | None = None
        self.description = "serial: one trial at a time in this process"

    def run(self, jobs: Sequence[Job], on_start=None, on_end=None, on_ready=None) -> list[Outcome]:
        """Run `jobs`; on_ready(description) once the engine is up, on_start(key, attempt) and on_end(outcome) per job."""
        outcomes: list[Outcome] = []
        if on_ready is not None:
            on_ready(self.description)
        with StopSignals(interrupt=True) as stop:
            for job in jobs:
                if stop.signum is not None or self.stopped is not None:
                    outcomes.append(Outcome(job.key, "pending"))
                    continue
                if on_start is not None:
                    on_start(job.key, 1)
                try:
                    outcome = _outcome(job, 1, execute(job.call, job.args, 1, self.threads))
                except KeyboardInterrupt:  # a signal outside the job's own StopSignals
                    signum = stop.signum or signal.SIGINT
                    outcome = Outcome(job.key, "interrupted", error="interrupted", exit_code=128 + signum, attempts=1,
                                      host=socket.gethostname(), pid=os.getpid())
                if outcome.status == "interrupted":
                    self.stopped = stop.signum or outcome.exit_code - 128
                outcomes.append(outcome)
                if on_end is not None:
                    on_end(outcome)
        return outcomes


class RayEngine:
    """Jobs as Ray tasks: on a Ray started here for the run (address None) or on a running cluster.

    Each task asks for `cpus_per_job` CPUs and `gpus_per_job` GPUs (a fraction
    shares one: Ray sets each task's CUDA_VISIBLE_DEVICES); Ray runs as many at
    once as they allow, and the driver keeps at most `workers` in flight. Retries are
    the driver's (max_retries=0 on the task), so it knows every attempt.
    """

    name = "ray"

    def __init__(
        self, address: str | None = None, workers: int | None = None, cpus_per_job: int = 1, max_failures: int = 2,
        gpus_per_job: float = 0.0,
    ):
        self.address = address
        self.workers = workers
        self.cpus_per_job = cpus_per_job
        self.gpus_per_job = gpus_per_job
        self.max_failures = max_failures
        self.stopped: int | None = None
        self.description = ""

    def run(self, jobs: Sequence[Job], on_start=None, on_end=None, on_ready=None) -> list[Outcome]:
        """As SerialEngine.run."""
        ray = import_ray()
        self._connect(ray)
        try:
            if on_ready is not None:
                on_ready(self.description)
            return self._drive(ray, jobs, on_start, on_end)
        finally:
            ray.shutdown()  # a Ray started here stops with it; a cluster only loses this driver

    def _connect(self, ray) -> None:
        """ray.init for this run: a Ray of its own (address None), or the cluster's."""
        import logging

        quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
        if self.address is None:
            cpus = (self.workers or max(1, (os.cpu_count() or 1) // self.cpus_per_job)) * self.cpus_per_job
            ray.init(num_cpus=cpus, **quiet)
            gpus = int(ray.cluster_resources().get("GPU", 0))
            self.description = f"ray: started on this machine with {cpus} CPUs" + (f" and {gpus} GPUs" if gpus else "")
            self._check_gpus(ray, "this machine")
            return
        if self.address != "auto" and "RAY_AUTH_MODE" not in os.environ and _token_available():
            # Ray turns token authentication on by itself only for address=None/auto; a cluster started by
            # `ray start` expects it, so an explicit address sends this user's token too.
            os.environ["RAY_AUTH_MODE"] = "token"
        try:
            ray.init(address=self.address, **{k: v for k, v in quiet.items() if k != "include_dashboard"})
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(
                f"--address {self.address}: cannot connect to a Ray cluster ({first}); start one with "
                "`ray start --head` on its head node, and pass HOST:PORT of it (or auto on a node of it); a cluster "
                "with token authentication needs its token in ~/.ray/auth_token or RAY_AUTH_TOKEN"
            ) from None
        resources = ray.cluster_resources()
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        gpus = f", {int(resources['GPU'])} GPUs" if resources.get("GPU") else ""
        self.description = f"ray: cluster at {self.address}, {int(resources.get('CPU', 0))} CPUs{gpus} on {nodes} node(s)"
        self._check_gpus(ray, f"the cluster at {self.address}")

    def _check_gpus(self, ray, where: str) -> None:
        """A trial asking for more GPUs than Ray has would wait for ever: refuse it now, in one line."""
        have = ray.cluster_resources().get("GPU", 0)
        if self.gpus_per_job > have:
            ray.shutdown()
            raise UsageError(f"--gpus-per-trial {self.gpus_per_job:g}: {where} has {have:g} GPUs for Ray")

    def _capacity(self, ray) -> int:
        if self.workers is not None:
            return self.workers
        return max(1, int(ray.cluster_resources().get("CPU", 1) // self.cpus_per_job))

    def _drive(self, ray, jobs: Sequence[Job], on_start, on_end) -> list[Outcome]:
        from ray.exceptions import RayError, RayTaskError, TaskCancelledError

        task = ray.remote(execute).options(num_cpus=self.cpus_per_job, num_gpus=self.gpus_per_job, max_retries=0)
        queue = deque((job, 1) for job in jobs)
        running: dict[Any, tuple[Job, int]] = {}
        done: dict[str, Outcome] = {}
        capacity = self._capacity(ray)
        cancelled = False
        with StopSignals() as stop:
            while running or (queue and stop.signum is None):
                while queue and len(running) < capacity and stop.signum is None:
                    job, attempt = queue.popleft()
                    running[task.remote(job.call, job.args, attempt, self.cpus_per_job)] = (job, attempt)
                    if on_start is not None:
                        on_start(job.key, attempt)
                if stop.signum is not None and not cancelled:
                    for ref in running:
                        ray.cancel(ref)  # SIGINT in the task's main thread: it saves and stops
                    cancelled = True
                ready, _ = ray.wait(list(running), num_returns=1, timeout=0.25)
                for ref in ready:
                    job, attempt = running.pop(ref)
                    try:
                        outcome = _outcome(job, attempt, ray.get(ref))
                    except TaskCancelledError:
                        outcome = Outcome(job.key, "interrupted", error="cancelled", exit_code=128 + (stop.signum or 2), attempts=attempt)
                    except RayTaskError as exc:  # execute() reports a job's own failures; this is Ray's own
                        outcome = Outcome(job.key, "error", error=_first_line(exc), kind=type(exc).__name__, exit_code=1, attempts=attempt)
                    except RayError as exc:  # the worker process or its node died: the job did not fail, its host did
                        if attempt <= self.max_failures and stop.signum is None:
                            queue.appendleft((job, attempt + 1))
                            continue
                        outcome = Outcome(job.key, "lost", error=_first_line(exc), kind=type(exc).__name__, exit_code=1, attempts=attempt)
                    done[job.key] = outcome
                    if on_end is not None:
                        on_end(outcome)
        self.stopped = stop.signum
        return [done.get(job.key) or Outcome(job.key, "pending") for job in jobs]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _token_available() -> bool:
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or os.path.exists(
        os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    )


def import_ray():
    """The ray module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"ray is not installed; {RAY_INSTALL_HINT}, or use --engine serial", location="--engine") from None
    return ray


def ray_installed() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def make_engine(
    engine: str | None,
    address: str | None = None,
    workers: int | None = None,
    cpus_per_job: int | None = None,
    max_failures: int = 2,
    threads_in_serial: bool = False,
    gpus_per_job: float = 0.0,
):
    """The engine a command asked for. `threads_in_serial`: a sweep runs serial trials with cpus_per_job BLAS
    threads as Ray does, so both give the same figures; train --seeds keeps the process's own BLAS threads."""
    if engine is None:
        engine = "ray" if address is not None else "serial"
    if engine not in ENGINES:
        raise ConfigError(f"'{engine}' is not an engine; use serial or ray", location="--engine")
    for flag, value in (("--workers", workers), ("--cpus-per-trial", cpus_per_job)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"must be a positive integer, got {value!r}", location=flag)
    if isinstance(gpus_per_job, bool) or not isinstance(gpus_per_job, (int, float)) or not gpus_per_job >= 0:
        raise ConfigError(f"must be a number >= 0 (a fraction shares a GPU), got {gpus_per_job!r}", location="--gpus-per-trial")
    if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 0:
        raise ConfigError(f"must be a non-negative integer, got {max_failures!r}", location="--max-failures")
    if engine == "serial":
        if address is not None:
            raise ConfigError("is for the ray engine; drop it or use --engine ray", location="--address")
        return SerialEngine(threads=(cpus_per_job or 1) if threads_in_serial else cpus_per_job)
    import_ray()  # before anything starts: a missing ray is one line now
    return RayEngine(address=address, workers=workers, cpus_per_job=cpus_per_job or 1, max_failures=max_failures,
                     gpus_per_job=float(gpus_per_job))


def raise_for(outcome: Outcome) -> None:
    """Re-raise what ended a job that did not finish, as the command itself would have failed."""
    if outcome.status == "ok":
        return
    if outcome.status in ("interrupted", "pending"):
        raise TrainingInterrupted(outcome.error or "interrupted before it started", outcome.exit_code or 130, None)
    if outcome.traceback:  # a bug in the job: its traceback, as a bug in the command keeps it
        raise RuntimeError(f"{outcome.key} failed in process {outcome.pid} on {outcome.host}:\n{outcome.traceback}")
    if outcome.kind == "DivergedError":
        raise DivergedError(outcome.error)
    raise (UsageError if outcome.exit_code == 2 else NncliError)(f"{outcome.key}: {outcome.error}" if outcome.status == "lost" else outcome.error)

