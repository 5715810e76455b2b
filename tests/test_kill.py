"""Crash safety: SIGKILL at random moments never leaves a checkpoint that cannot be loaded and resumed."""

import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import make_digits, mlp_config, write_config

import nncli
from nncli.checkpoint import read_checkpoint

KILLS = 50


@pytest.mark.slow
def test_sigkill_at_random_moments_always_leaves_a_resumable_checkpoint(tmp_path):
    # Tiny epochs, so a large share of the process's life is spent writing history.csv and checkpoints.
    data = make_digits(tmp_path / "data", n_train=200, n_test=20)
    config = mlp_config(data, epochs=10_000, batch_size=50)
    path = write_config(tmp_path / "c.yaml", config)
    out = tmp_path / "run"
    last = out / "checkpoints" / "last.npz"
    rng = random.Random(0)
    kills_after_a_checkpoint = 0
    for attempt in range(KILLS):
        args = ["--resume", str(last)] if last.exists() else ["--out", str(out)]
        proc = subprocess.Popen([sys.executable, "-m", "nncli", "train", str(path), "-q", *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.4, 1.4))  # start-up takes about 0.4 s
        proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, stderr.decode()
        if last.exists():
            kills_after_a_checkpoint += 1
            checkpoint = read_checkpoint(last)  # verified load: zip, members, meta, arrays
            assert checkpoint.meta["epoch"] >= 1
    assert kills_after_a_checkpoint >= KILLS - 5

    # The run survives: finishing it from the last checkpoint equals a run that was never killed.
    epochs = read_checkpoint(last).meta["epoch"] + 2
    finished = subprocess.run([sys.executable, "-m", "nncli", "train", str(path), "-q", "--resume", str(last),
                               "--set", f"training.epochs={epochs}"], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert not list(out.rglob("*.tmp"))  # the killed runs' half-written temporaries were cleared
    config["training"]["epochs"] = epochs
    straight = nncli.train(config, out=tmp_path / "straight")
    strip = lambda p: [",".join(line.split(",")[:-1]) for line in p.read_text().splitlines()]  # noqa: E731
    assert strip(out / "history.csv") == strip(straight.run_dir / "history.csv")
    np.testing.assert_array_equal(
        read_checkpoint(last).arrays["param/1.dense/W"], read_checkpoint(straight.final_checkpoint).arrays["param/1.dense/W"]
    )
