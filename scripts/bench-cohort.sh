#!/usr/bin/env bash
# The cohort workflow's overhead and the thread count per slide, measured:
#
#   scripts/bench-cohort.sh SPLIT_DIR [ROUNDS]
#
# Builds 20 synthetic slides with `celnet slide-mosaic --from SPLIT_DIR --half report` (24x24
# PCam patches, about 2,650 windows each), then scores them ROUNDS times (2), interleaved: by
# hand, one `celnet heatmap` after another (one thread per core); through scripts/cohort.sh
# with 1 thread per slide (slides side by side); and with 2 threads per slide. Then
# `celnet slide-eval` on the same slides, whose slide AUC `celnet cohort` must equal. Writes
# under target/bench-cohort/.
set -euo pipefail
cd "$(dirname "$0")/.."
split=${1:?usage: scripts/bench-cohort.sh SPLIT_DIR [ROUNDS]}
rounds=${2:-2}
celnet=$PWD/target/release/celnet
[ -x "$celnet" ] || cargo build --release --bin celnet
work=$PWD/target/bench-cohort
slides=$work/slides
rm -rf "$work"
mkdir -p "$work"
"$celnet" slide-mosaic --from "$split" --half report --out "$slides" --n 20 --seed 26
# slide-mosaic writes masks beside the slides: the cohort is the CSV of slides and labels.
python3 - "$slides" <<'PY'
import json, sys
folder = sys.argv[1]
manifest = json.load(open(f"{folder}/manifest.json"))
with open(f"{folder}/cohort.csv", "w") as f:
    f.write("path,label\n")
    for slide in manifest["slides"]:
        f.write(f"{slide['image']},{1 if slide['lesions'] else 0}\n")
PY
seconds() { python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$1"; }
by_hand() {
  local start; start=$(date +%s.%N)
  for slide in "$slides"/slide-???.png; do
    "$celnet" heatmap "$slide" -o "$1/$(basename "$slide" .png)" > /dev/null
  done
  seconds "$start"
}
workflow() {
  local out=$1 start; shift; start=$(date +%s.%N)
  scripts/cohort.sh "$slides/cohort.csv" "$out" "$@" > "$out.log" 2>&1
  seconds "$start"
}
for round in $(seq 1 "$rounds"); do
  echo "round $round: by hand $(by_hand "$work/hand-$round") s," \
    "workflow with 1 thread per slide $(workflow "$work/threads-1-$round") s," \
    "with 2 threads per slide $(workflow "$work/threads-2-$round" --config threads=2) s"
done
"$celnet" slide-eval "$slides" --json > "$work/slide-eval.json"
python3 - "$work" <<'PY'
import json, statistics, sys
work = sys.argv[1]
evaluation = json.load(open(f"{work}/slide-eval.json"))
print(f"slide-eval: slide AUC {evaluation['auc_probability']:.4f} (probability), {evaluation['auc']:.4f} (maximum)")
for run in ("threads-1-1", "threads-2-1"):
    cohort = json.load(open(f"{work}/{run}/cohort.json"))
    m = cohort["measures"]
    rows = [r["fields"] for r in cohort["rows"]]
    median = lambda key: statistics.median(r[key] for r in rows)
    memory = [r["scoring.peak_memory_mb"] for r in rows]
    print(f"{run}: cohort slide AUC {m['auc_probability']:.4f} (probability), {m['auc_score']:.4f} (maximum); "
          f"per slide: median {median('windows'):.0f} windows, {median('seconds'):.2f} s, "
          f"{median('scoring.windows_per_second'):.0f} windows/s, peak memory {min(memory):.0f}-{max(memory):.0f} MB")
PY
