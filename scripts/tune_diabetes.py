"""The choices in configs/diabetes_mlp.yaml, made on the validation split only (the test split is not read):
each candidate is the config with some overrides, trained with --seeds 10; printed: its mean validation R².

    python scripts/tune_diabetes.py [OUT_FOLDER]
"""

import itertools
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/tune-diabetes")
NNCLI = [sys.executable, "-m", "nncli"]

candidates = [
    (f"{units} units, weight decay {wd:g}, lr {lr:g}",
     [f"model.layers.0.units={units}", f"training.weight_decay={wd}", f"optimizer.learning_rate={lr}"])
    for units, wd, lr in itertools.product([4, 8, 16], [1e-2, 3e-2], [1e-3, 3e-3])
]
candidates.append(("linear", ["model.layers=[{type: dense, units: 1}]"]))
for k, (name, sets) in enumerate(candidates):
    out = OUT / f"c{k}"
    subprocess.run([*NNCLI, "train", str(REPO / "configs" / "diabetes_mlp.yaml"), "--seeds", "10", "--out", str(out), "--quiet",
                    *[a for s in sets for a in ("--set", s)]], cwd=REPO, capture_output=True, check=True)
    r2 = []
    for seed in range(10):
        done = subprocess.run([*NNCLI, "eval", str(out / f"seed-{seed}" / "checkpoints" / "last.npz"), "--split", "val", "--json"],
                              cwd=REPO, capture_output=True, text=True, check=True)
        r2.append(json.loads(done.stdout.splitlines()[0])["r2"])
    print(f"{name:40s} validation R² {statistics.mean(r2):.4f} ± {statistics.stdev(r2):.3f}", flush=True)
