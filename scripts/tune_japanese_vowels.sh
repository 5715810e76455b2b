#!/bin/bash
# The choices in configs/japanese_vowels.yaml, made on validation only (data.validation_split 0.2 of the TRAIN file,
# mean over --seeds 3): each candidate is the config with one change. The test set is not read here.
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/tune-japanese-vowels}
run() {
  name=$1; shift
  rm -rf $OUT/$name
  nncli train configs/japanese_vowels.yaml --seeds 3 --out $OUT/$name --quiet "$@" >/dev/null 2>&1
  python - "$name" "$OUT" <<'PY'
import csv, sys
name = sys.argv[1]
val, vloss = [], []
for s in range(3):
    rows = list(csv.DictReader(open(f"{sys.argv[2]}/{name}/seed-{s}/history.csv")))
    val.append(float(rows[-1]["val_accuracy"])); vloss.append(float(rows[-1]["val_loss"]))
m = lambda v: sum(v) / len(v)
print(f"{name:28s} val_acc {m(val):.4f}  val_loss {m(vloss):.4f}")
PY
}
layer() { echo "model.layers.0=$1"; }
run lstm64 --set "$(layer '{type: lstm, units: 64}')"
run lstm32 --set "$(layer '{type: lstm, units: 32}')"
run lstm100 --set "$(layer '{type: lstm, units: 100}')"
run bilstm32 --set "$(layer '{type: bidirectional, layer: {type: lstm, units: 32}}')"
run lstm64_drop --set "$(layer '{type: lstm, units: 64, dropout: 0.2}')"
run lstm64_drop3 --set "$(layer '{type: lstm, units: 64, dropout: 0.3}')"
run lstm64_drop_rec --set "$(layer '{type: lstm, units: 64, dropout: 0.2, recurrent_dropout: 0.2}')"
run bilstm32_drop --set "$(layer '{type: bidirectional, layer: {type: lstm, units: 32, dropout: 0.2}}')"
