"""Time Hopfield recall: N = 784, Hebbian, async, 1,000 probes with 10% flipped bits.

    python benchmarks/bench_hopfield.py                        # MNIST digits and random patterns
    python benchmarks/bench_hopfield.py --patterns random --stored 50 --probes 1000 --rounds 3

Two pattern sets, stored with the Hebbian rule (zero diagonal): `mnist`, binarised
training digits (pixel > 127.5 -> +1, else -1; a seeded choice), and `random`, unbiased
±1 patterns. 50 digits are far beyond what the Hebbian rule holds for such correlated
patterns, so most probes fall into spurious states after many flips: the hard case for
timing. 50 random patterns (load 0.064) are recalled. Each run starts from the same
probes and the same Generator seed; the median of `--rounds` runs of `run` is printed
with the sweeps used and the exact recall (sign(state) == the probe's pattern).

Then the command itself, as a user runs it: `nncli train configs/hopfield_digits.yaml` with
`--set model.rule=hebbian --set model.max_sweeps=30 --set data.limit=STORED` into a temporary
folder, and `nncli eval CKPT --probes 1000 --noise 0.1 --json` timed as a whole process
(interpreter start, reading MNIST, rebuilding the model from the checkpoint, the probes).

Harder loads show what long descents cost: `--patterns random --stored 100 --noise 0.3`
(load 0.13, most probes end in spurious states after ~17 sweeps on average, 7% still
moving after 30) took 0.70 s on 2 cores, against 0.1-0.2 s for the defaults.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nncli.data.idx import read_idx
from nncli.models.hopfield import HopfieldNetwork, make_probes, outcomes

MNIST = REPO / "datasets" / "mnist" / "train-images-idx3-ubyte.gz"


def patterns(kind: str, count: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "random":
        return np.where(rng.random((count, 784)) < 0.5, -1.0, 1.0)
    images = read_idx(MNIST).reshape(-1, 784)
    return np.where(images[rng.choice(len(images), count, replace=False)] > 127.5, 1.0, -1.0)


def bench(kind: str, stored: int, probes: int, noise: float, max_sweeps: int, rounds: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    x = patterns(kind, stored, rng)
    net = HopfieldNetwork(784, "hebbian", zero_diagonal=True, update="async", max_sweeps=max_sweeps)
    net.store(x)
    targets = rng.integers(0, stored, probes)
    start = make_probes(x, targets, rng, noise=noise)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        result = net.run(start, np.random.default_rng(seed + 1))
        times.append(time.perf_counter() - t0)
    labels, counts = np.unique(outcomes(result, x, targets), return_counts=True)
    return {
        "patterns": kind,
        "seconds": statistics.median(times),
        "times": times,
        "mean_sweeps": float(result.sweeps.mean()),
        "max_sweeps_used": int(result.sweeps.max()),
        "converged": float(result.converged.mean()),
        "exact_recall": float((np.sign(result.states) == x[targets]).all(axis=1).mean()),
        "outcomes": dict(zip(labels.tolist(), counts.tolist())),
    }


def bench_command(stored: int, probes: int, noise: float, max_sweeps: int, rounds: int) -> dict:
    """`nncli eval` of a Hebbian digits checkpoint, timed as whole processes (median of `rounds`)."""
    nncli = [sys.executable, "-m", "nncli"]
    with tempfile.TemporaryDirectory() as tmp:
        sets = ["model.rule=hebbian", f"model.max_sweeps={max_sweeps}", f"data.limit={stored}"]
        subprocess.run([*nncli, "train", str(REPO / "configs" / "hopfield_digits.yaml"), "--out", f"{tmp}/run", "--quiet",
                        *[a for s in sets for a in ("--set", s)]], cwd=REPO, check=True, capture_output=True)
        command = [*nncli, "eval", f"{tmp}/run/checkpoints/last.npz", "--probes", str(probes), "--noise", str(noise), "--json"]
        times, report = [], None
        for _ in range(rounds):
            t0 = time.perf_counter()
            done = subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            report = json.loads(done.stdout.splitlines()[0])
    return {"seconds": statistics.median(times), "times": times, "report": report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patterns", choices=("mnist", "random", "both"), default="both")
    parser.add_argument("--stored", type=int, default=50)
    parser.add_argument("--probes", type=int, default=1000)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--max-sweeps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    kinds = ("mnist", "random") if args.patterns == "both" else (args.patterns,)
    print(f"N = 784, hebbian, async, {args.stored} stored, {args.probes} probes, {args.noise:.0%} flipped bits, "
          f"max_sweeps {args.max_sweeps}, median of {args.rounds}")
    for kind in kinds:
        r = bench(kind, args.stored, args.probes, args.noise, args.max_sweeps, args.rounds, args.seed)
        print(f"{kind:>6}: {r['seconds']:.2f} s (runs {', '.join(f'{t:.2f}' for t in r['times'])}); sweeps mean "
              f"{r['mean_sweeps']:.2f}, max {r['max_sweeps_used']}; converged {r['converged']:.1%}; exact recall "
              f"{r['exact_recall']:.1%}; outcomes {r['outcomes']}")
    c = bench_command(args.stored, args.probes, args.noise, args.max_sweeps, args.rounds)
    e = c["report"]
    print(f"nncli eval ({args.stored} digits stored, {e['n']} probes): {c['seconds']:.2f} s per process "
          f"(runs {', '.join(f'{t:.2f}' for t in c['times'])}); exact recall {e['accuracy']:.1%}, overlap {e['overlap']:.3f}, "
          f"mean sweeps {e['mean_sweeps']:.2f}; outcomes {e['outcomes']}")


if __name__ == "__main__":
    main()
