"""nncli sweep on Ray, for real: worker processes, a cluster started by `ray start`, a killed worker, Ctrl-C.

Every command that starts Ray runs in a network namespace of its own whose
only interface is loopback (`unshare -n`), so nothing binds beyond 127.0.0.1
whatever Ray chooses. Each test gives Ray a private temp folder (RAY_TMPDIR)
and HOME (its auth token); afterwards no process carrying that RAY_TMPDIR may
be left. The serial engine's results are the reference.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from helpers import history_lines, make_digits, mlp_config, write_config

CI = os.environ.get("CI") == "true"

try:
    import ray  # noqa: F401 - in the dev extra
except ImportError:  # pragma: no cover - a dev install has it
    if CI:
        raise
    pytest.skip("ray is not installed (pip install -e '.[dev]')", allow_module_level=True)


def _namespace_prefix() -> list[str] | None:
    """unshare as root, or in a user namespace of its own otherwise; None where neither is allowed."""
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        try:
            if subprocess.run([*prefix, "ip", "link", "set", "lo", "up"], capture_output=True, timeout=10).returncode == 0:
                return prefix
        except (FileNotFoundError, subprocess.TimeoutExpired):
            pass
    return None


NAMESPACE = _namespace_prefix()
if NAMESPACE is None:
    if CI:
        raise RuntimeError("unshare -n is not allowed here: the Ray tests cannot keep Ray on loopback")
    pytest.skip("unshare -n is not allowed here: the Ray tests need a loopback-only network namespace", allow_module_level=True)

GRID = ["--grid", "optimizer.learning_rate=0.01,0.02", "--seeds", "2"]
NUMBERS = ("score", "best_epoch", "epochs", "train_loss", "train_accuracy", "val_loss", "val_accuracy")


def loopback(*args) -> list[str]:
    """`args` as a command in a new network namespace with only loopback, up (exec: the same process id)."""
    return [*NAMESPACE, "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *map(str, args)]


def nncli(*args) -> list[str]:
    return loopback(sys.executable, "-m", "nncli", *args)


def _ray_processes(marker: str) -> list[int]:
    """Processes whose environment holds this test's RAY_TMPDIR (Ray renames its workers' command lines)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def marker_of(env: dict) -> str:
    return f"RAY_TMPDIR={env['RAY_TMPDIR']}"


def _stop(pids: list[int]) -> None:
    if not pids:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(1.0)


@pytest.fixture
def ray_env(tmp_path):
    """Environment for commands that run Ray; the test fails if a Ray process outlives it (leftovers are killed)."""
    short = Path(tempfile.mkdtemp(prefix="nr", dir="/tmp"))  # Ray's socket paths must fit in 107 bytes
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "RAY_TMPDIR": str(short), "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0"}
    yield env
    marker = marker_of(env)
    deadline = time.monotonic() + 15
    while _ray_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _ray_processes(marker)
    _stop(left)
    shutil.rmtree(short, ignore_errors=True)
    assert not left, f"Ray processes left behind: {left}"


@pytest.fixture(scope="module")
def slow_config(tmp_path_factory):
    """About 0.3 s an epoch (batch 1), 3 epochs: time to act between a trial's epochs."""
    folder = tmp_path_factory.mktemp("slow")
    digits = make_digits(folder / "digits", n_train=3000, n_test=30)
    return write_config(folder / "slow.yaml", mlp_config(digits, epochs=3, batch_size=1))


@pytest.fixture(scope="module")
def serial_reference(slow_config, tmp_path_factory):
    """The serial engine's sweep of GRID: the reference every Ray run must equal."""
    out = tmp_path_factory.mktemp("serial") / "sweep"
    result = subprocess.run([sys.executable, "-m", "nncli", "sweep", slow_config, *GRID, "--engine", "serial", "--out", out, "--quiet"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return out


def rows(folder: Path) -> list[dict]:
    with open(folder / "runs.csv", newline="") as f:
        return list(csv.DictReader(f))


def wait_for_epoch(folder: Path, trial: str, timeout: float = 120) -> None:
    history = folder / "trials" / trial / "history.csv"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if history.exists() and len(history.read_text().splitlines()) >= 2 and (folder / "attempts" / f"{trial}-1.json").exists():
            return
        time.sleep(0.02)
    raise AssertionError(f"{trial} wrote no epoch in {timeout} s")


def assert_same_as(reference: Path, folder: Path) -> None:
    """Every trial's history (but seconds) and runs.csv figures equal the reference sweep's."""
    mine, theirs = rows(folder), rows(reference)
    assert [r["trial"] for r in mine] == [r["trial"] for r in theirs]
    for a, b in zip(mine, theirs):
        assert a["status"] == b["status"] == "ok", a
        assert {k: a[k] for k in NUMBERS} == {k: b[k] for k in NUMBERS}, a["trial"]
        assert history_lines(folder / "trials" / a["trial"]) == history_lines(reference / "trials" / b["trial"]), a["trial"]


def test_two_workers_run_the_trials_as_serial_does_and_a_killed_worker_is_retried_from_its_checkpoint(
    tmp_path, ray_env, slow_config, serial_reference
):
    out = tmp_path / "sweep"
    driver = subprocess.Popen(nncli("sweep", slow_config, *GRID, "--workers", "2", "--out", out, "--quiet"), env=ray_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_epoch(out, "t001")
        victim = json.loads((out / "attempts" / "t001-1.json").read_text())["pid"]
        os.kill(victim, signal.SIGKILL)  # the worker process running t001, after its first epoch
        stdout, stderr = driver.communicate(timeout=180)
    finally:
        driver.kill()
    assert driver.returncode == 0, stderr
    assert "ray: started on this machine with 2 CPUs" in stderr
    table = rows(out)
    assert [r["attempts"] for r in table] == ["1", "2", "1", "1"]  # t001 ran again; the others once
    pids = {int(r["pid"]) for r in table}
    assert len(pids) >= 2 and driver.pid not in pids and victim not in pids  # worker processes, not the driver
    retry = json.loads((out / "attempts" / "t001-2.json").read_text())
    assert retry["pid"] != victim and retry["attempt"] == 2
    assert "t001  worker lost: attempt 2, resuming from its last checkpoint" in stderr
    assert_same_as(serial_reference, out)  # the retried trial too: its history equals an uninterrupted run


def test_sigint_on_the_driver_saves_the_running_trials_and_resume_finishes_the_same_sweep(tmp_path, ray_env, slow_config, serial_reference):
    out = tmp_path / "sweep"
    driver = subprocess.Popen(nncli("sweep", slow_config, *GRID, "--workers", "2", "--out", out, "--quiet"), env=ray_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_epoch(out, "t001")
        driver.send_signal(signal.SIGINT)
        _, stderr = driver.communicate(timeout=120)
    finally:
        driver.kill()
    assert driver.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: interrupted by SIGINT") and last.endswith(f"continue with: nncli sweep --resume {out}")
    stopped = rows(out)
    assert {r["status"] for r in stopped} <= {"ok", "interrupted", "pending"} and stopped[1]["status"] == "interrupted"
    assert stopped[3]["status"] == "pending" and not (out / "trials" / "t003").exists()
    for row in stopped:
        if row["status"] == "interrupted":
            assert (out / "trials" / row["trial"] / "checkpoints" / "last.npz").exists()
    assert not (out / "summary.csv").exists()
    again = subprocess.run(nncli("sweep", "--resume", out, "--workers", "2", "--quiet"), env=ray_env, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr
    assert_same_as(serial_reference, out)
    assert (out / "summary.csv").exists() and (out / "best.yaml").exists()


def test_a_sweep_runs_on_a_cluster_started_by_ray_start_and_starts_no_ray_of_its_own(tmp_path, ray_env, digits_config):
    out, port = tmp_path / "sweep", 6390  # the namespace is the test's own: no port is taken
    ray_cli = f"{sys.executable} -c 'from ray.scripts.scripts import main; main()'"
    script = (
        f"{ray_cli} start --head --node-ip-address 127.0.0.1 --port {port} --num-cpus 2 --num-gpus 2 --include-dashboard=false "
        f"--disable-usage-stats > {tmp_path / 'head.log'} 2>&1 || exit 90\n"
        f"exec {sys.executable} -m nncli sweep {digits_config} --grid optimizer.learning_rate=0.01,0.1 "
        f"--address 127.0.0.1:{port} --gpus-per-trial 1 --out {out} --quiet\n"
    )
    driver = subprocess.run([*NAMESPACE, "sh", "-c", "ip link set lo up && " + script], env=ray_env, capture_output=True,
                            text=True, timeout=180)
    try:
        assert driver.returncode == 0, (driver.stderr, (tmp_path / "head.log").read_text())
        assert f"ray: cluster at 127.0.0.1:{port}, 2 CPUs, 2 GPUs on 1 node(s)" in driver.stderr
        assert "Started a local Ray instance" not in driver.stderr
        cluster = _ray_processes(marker_of(ray_env))  # still running: `ray start` daemonised it
        raylets = [pid for pid in cluster if b"raylet" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(raylets) == 1  # the cluster's; a Ray of the driver's own would have had its own raylet
        for row in rows(out):
            assert row["status"] == "ok"
            attempt = json.loads((out / "attempts" / f"{row['trial']}-1.json").read_text())
            assert attempt["parent"] == raylets[0]  # a worker process of the cluster's raylet
            assert attempt["cuda_visible_devices"] in ("0", "1")  # Ray placed it on one of the 2 (declared) GPUs
    finally:
        _stop(_ray_processes(marker_of(ray_env)))  # stop the cluster


@pytest.fixture
def digits_config(tmp_path):
    config = mlp_config(make_digits(tmp_path / "digits"), epochs=2)
    config["compare"] = {"optimizers": ["sgd", "adam"], "max_iterations": 12}
    return write_config(tmp_path / "tiny.yaml", config)


def test_train_seeds_and_compare_optimizers_seeds_run_on_ray_with_the_serial_results(tmp_path, ray_env, digits_config):
    script = " && ".join([
        f"{sys.executable} -m nncli train {digits_config} --seeds 2 --engine ray --out {tmp_path / 'ray-train'} --quiet",
        f"{sys.executable} -m nncli compare-optimizers {digits_config} --seeds 2 --engine ray --out {tmp_path / 'ray-compare'}",
    ])
    on_ray = subprocess.run([*NAMESPACE, "sh", "-c", "ip link set lo up && " + script], env=ray_env, capture_output=True, text=True, timeout=180)
    assert on_ray.returncode == 0, on_ray.stderr
    serial = [[sys.executable, "-m", "nncli", "train", digits_config, "--seeds", "2", "--out", tmp_path / "train", "--quiet"],
              [sys.executable, "-m", "nncli", "compare-optimizers", digits_config, "--seeds", "2", "--out", tmp_path / "compare"]]
    for command in serial:
        assert subprocess.run(command, capture_output=True, timeout=120).returncode == 0
    for seed in ("seed-0", "seed-1"):
        assert history_lines(tmp_path / "ray-train" / seed) == history_lines(tmp_path / "train" / seed)
    for name in ("summary.csv", "runs.csv"):
        with open(tmp_path / "ray-compare" / name) as a, open(tmp_path / "compare" / name) as b:
            mine, theirs = list(csv.DictReader(a)), list(csv.DictReader(b))
        drop = {"seconds", "seconds_sd"}
        assert [{k: v for k, v in r.items() if k not in drop} for r in mine] == [{k: v for k, v in r.items() if k not in drop} for r in theirs]


def test_more_gpus_per_trial_than_ray_has_is_one_error_line_not_a_wait(tmp_path, ray_env, digits_config):
    out = tmp_path / "sweep"
    driver = subprocess.run(nncli("sweep", digits_config, "--grid", "optimizer.learning_rate=0.01,0.1", "--workers", "1",
                                  "--gpus-per-trial", "1", "--out", out, "--quiet"),
                            env=ray_env, capture_output=True, text=True, timeout=120)
    assert driver.returncode == 2, driver.stderr
    assert driver.stderr.strip().splitlines()[-1] == "error: --gpus-per-trial 1: this machine has 0 GPUs for Ray"
