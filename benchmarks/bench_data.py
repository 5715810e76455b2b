"""Time nncli's data loading against np.loadtxt on the same CSV files, and how cost grows with the rows.

    python benchmarks/bench_data.py                       # 1e5 and 1e6 rows × 9 numeric columns
    python benchmarks/bench_data.py --huge                # ... and 1e7 rows (about 700 MB of CSV, ~1 GB of memory)
    python benchmarks/bench_data.py --rows 1000 --train   # any sizes; also the whole `nncli train` process

Files are generated into a temporary folder (removed afterwards, unless --keep): 8 feature columns
of normal floats written with 5 decimals and an integer class label (0-2), about 70 bytes a row,
as one block of unique rows repeated. Each measurement runs in a fresh Python process, which
reports its own wall time for the load and its peak resident memory (VmHWM) and that of the
bare interpreter with numpy and nncli imported before loading, so the difference is the load's own.

- loadtxt: `np.loadtxt(path, delimiter=",", skiprows=1)` (float64, the whole table);
- nncli csv: the csv source's `load()`: parse, labels, splits, standardisation, float32 splits;
- nncli npy: the same table as features.npy + labels.npy (memory-mapped; stats in one pass);
- `--train`: `nncli train` (python -m nncli) for one epoch of a small MLP, peak RSS of the whole process.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
COLUMNS = 9  # 8 features + the label
BLOCK = 100_000  # unique rows, repeated to make larger files

# Peak resident memory of this process: VmHWM (Linux; it starts afresh at exec, unlike ru_maxrss, which a
# child inherits from the parent it was forked from), else ru_maxrss.
_PEAK = r"""
def peak_kib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""

_CHILD = _PEAK + r"""
import json, sys, time
import numpy as np
kind, path = sys.argv[1], sys.argv[2]
import nncli.data
from nncli.data import DATA_SOURCES
before = peak_kib()
t = time.perf_counter()
if kind == "loadtxt":
    a = np.loadtxt(path, delimiter=",", skiprows=1)
    rows, final = len(a), a.nbytes
else:
    spec = {"source": "csv", "path": path} if kind == "csv" else {"source": "npy", "path": path + ".x.npy", "labels": path + ".y.npy"}
    d = DATA_SOURCES.create(spec).load(np.random.SeedSequence(0))
    parts = [p for p in (d.train, d.val, d.test) if p is not None]
    rows = sum(len(p) for p in parts)
    final = sum(p.x.nbytes + p.y.nbytes for p in parts) if kind == "csv" else sum(p.y.nbytes for p in parts)
seconds = time.perf_counter() - t
peak = peak_kib()
print(json.dumps({"seconds": seconds, "rows": rows, "final": final, "base_kib": before, "peak_kib": peak}))
"""


def write_table(path: Path, rows: int, seed: int = 0) -> None:
    """A CSV of `rows` rows: 8 normal features (5 decimals) and a class label 0-2, block-repeated."""
    rng = np.random.default_rng(seed)
    n = min(rows, BLOCK)
    x = rng.normal(size=(n, COLUMNS - 1))
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1)
    buf = io.StringIO()
    np.savetxt(buf, np.column_stack([x, y]), fmt=["%.5f"] * (COLUMNS - 1) + ["%d"], delimiter=",")
    block = buf.getvalue()
    lines = block.splitlines(keepends=True)
    with open(path, "w") as f:
        f.write(",".join(f"f{i}" for i in range(COLUMNS - 1)) + ",label\n")
        for _ in range(rows // n):
            f.write(block)
        f.write("".join(lines[: rows % n]))


def write_arrays(csv_path: Path, rows: int) -> None:
    """The same table as <csv>.x.npy (float64 features) and <csv>.y.npy (int64 labels), written in blocks."""
    x_path, y_path = f"{csv_path}.x.npy", f"{csv_path}.y.npy"
    xs = np.lib.format.open_memmap(x_path, mode="w+", dtype=np.float64, shape=(rows, COLUMNS - 1))
    ys = np.lib.format.open_memmap(y_path, mode="w+", dtype=np.int64, shape=(rows,))
    block = np.loadtxt(csv_path, delimiter=",", skiprows=1, max_rows=min(rows, BLOCK), ndmin=2)
    for start in range(0, rows, len(block)):
        stop = min(start + len(block), rows)
        xs[start:stop] = block[: stop - start, :-1]
        ys[start:stop] = block[: stop - start, -1].astype(np.int64)
    xs.flush()
    ys.flush()
    del xs, ys


def measure(kind: str, path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    out = subprocess.run([sys.executable, "-c", _CHILD, kind, str(path)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{kind} on {path} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def train_peak(path: Path, folder: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of a whole `nncli train` process: one epoch of an 8-16-3 MLP."""
    config = folder / "train.yaml"
    config.write_text(
        f"name: bench\ndata: {{source: csv, path: {path}, target: label}}\n"
        "model:\n  layers:\n    - {type: dense, units: 16, activation: relu}\n    - {type: dense, units: 3}\n"
        "loss: cross_entropy\noptimizer: {type: adam, learning_rate: 1e-3}\ntraining: {epochs: 1, batch_size: 256}\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    code = _PEAK + (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print(f'PEAK_KIB={peak_kib()}', file=sys.stderr))\n"
        f"sys.argv = ['nncli', 'train', {str(config)!r}, '--out', {str(folder / 'run')!r}, '--quiet']\n"
        "runpy.run_module('nncli', run_name='__main__')\n"
    )
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"nncli train failed:\n{out.stderr}")
    shutil.rmtree(folder / "run", ignore_errors=True)
    peak = [line for line in out.stderr.splitlines() if line.startswith("PEAK_KIB=")][-1]
    return seconds, int(peak.split("=")[1]) / 1024


def _mb(kib: float) -> str:
    return f"{kib / 1024:,.0f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1e5,1e6", help="comma-separated row counts (default 1e5,1e6)")
    parser.add_argument("--huge", action="store_true", help="also 1e7 rows (about 700 MB of CSV)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest is shown")
    parser.add_argument("--train", action="store_true", help="also the peak RSS of a whole `nncli train` on each file")
    parser.add_argument("--no-npy", action="store_true", help="skip the npy source")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the files (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args(argv)
    sizes = [int(float(r)) for r in args.rows.split(",") if r.strip()] + ([10_000_000] if args.huge else [])
    folder = Path(tempfile.mkdtemp(prefix="nncli-bench-data-", dir=args.dir))
    print(f"{COLUMNS} numeric columns (8 features + class label); peak = VmHWM of the loading process, "
          "'own' = peak less the interpreter with numpy and nncli imported; best of "
          f"{args.repeat}; files in {folder}")
    header = f"{'rows':>10} {'file MB':>8} {'loadtxt s':>10} {'nncli s':>8} {'ratio':>6} {'loadtxt peak/own MB':>20} {'nncli peak/own MB':>18} {'final MB':>9}"
    if not args.no_npy:
        header += f" {'npy s':>7} {'npy peak/own MB':>16}"
    if args.train:
        header += f" {'train s':>8} {'train peak MB':>14}"
    print(header)
    try:
        for rows in sizes:
            path = folder / f"t{rows}.csv"
            write_table(path, rows)
            if not args.no_npy:
                write_arrays(path, rows)
            best = {}
            for kind in ("loadtxt", "csv") + (() if args.no_npy else ("npy",)):
                runs = [measure(kind, path) for _ in range(args.repeat)]
                best[kind] = min(runs, key=lambda r: r["seconds"])
            lt, nn = best["loadtxt"], best["csv"]
            line = (f"{rows:>10,} {path.stat().st_size / 1e6:>8.1f} {lt['seconds']:>10.2f} {nn['seconds']:>8.2f} "
                    f"{nn['seconds'] / lt['seconds']:>6.2f} {_mb(lt['peak_kib']) + '/' + _mb(lt['peak_kib'] - lt['base_kib']):>20} "
                    f"{_mb(nn['peak_kib']) + '/' + _mb(nn['peak_kib'] - nn['base_kib']):>18} {nn['final'] / 2**20:>9.1f}")
            if not args.no_npy:
                np_ = best["npy"]
                line += f" {np_['seconds']:>7.2f} {_mb(np_['peak_kib']) + '/' + _mb(np_['peak_kib'] - np_['base_kib']):>16}"
            if args.train:
                seconds, peak = train_peak(path, folder)
                line += f" {seconds:>8.1f} {peak:>14,.0f}"
            print(line, flush=True)
            if not args.keep:
                for p in folder.glob(f"t{rows}.csv*"):
                    p.unlink()
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
