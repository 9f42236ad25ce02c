#!/usr/bin/env bash
# The cohort workflow (scripts/cohort.sh: Snakemake over `celnet heatmap`, then `celnet cohort`)
# on the fixture slides, a DICOM study and a corrupt file:
# 1. a run killed once its first slide is done, then run again, finishes the rest without
#    redoing that slide, and the corrupt slide is listed as failed while every other is scored;
# 2. a further run with nothing changed recomputes nothing;
# 3. a CSV of slides with labels and a pixel-size override gives the labelled measures.
# Needs target/release/celnet (scripts/test.sh runs `cargo test --release` first) and python3.
set -euo pipefail
cd "$(dirname "$0")/../.."

work=target/workflow-test
rm -rf "$work"
mkdir -p "$work/slides"
cp tests/fixtures/slide/field-of-view.png tests/fixtures/slide/lesions.png \
  tests/fixtures/slide/pyramid-jpeg.tif tests/fixtures/tiff/svs-crop.svs "$work/slides/"
cp -r tests/fixtures/dicom/jpeg "$work/slides/dicom-study"
printf 'II*\0 a damaged slide' > "$work/slides/corrupt.svs"
out=$work/out
slides_total=6

fail() {
  echo "workflow test: $*" >&2
  exit 1
}
check() { # python3 code that reads $out; fails the test with its message
  python3 - "$out" "$@" || fail "check failed (outputs in $out)"
}
mtimes() { stat -c '%n %Y.%y' "$out"/slides/*/status.json "$out"/cohort.csv 2>/dev/null | sort; }

echo "workflow test: a run killed after its first slide"
# Its own process group, so that the kill takes Snakemake and the running celnet with it.
setsid scripts/cohort.sh "$work/slides" "$out" --cores 1 > "$work/run-1.log" 2>&1 &
run=$!
for _ in $(seq 1 1200); do
  compgen -G "$out/slides/*/status.json" > /dev/null && break
  kill -0 "$run" 2>/dev/null || fail "the first run ended before any slide was done: $(tail -5 "$work/run-1.log")"
  sleep 0.25
done
kill -9 -- "-$run"
wait "$run" 2>/dev/null || true
done_before=$(stat -c '%n %Y.%y' "$out"/slides/*/status.json)
[ "$(echo "$done_before" | wc -l)" -lt "$slides_total" ] || fail "every slide was done before the kill"
echo "$done_before" | cut -d' ' -f1 | sed 's/^/  done before the kill: /'

echo "workflow test: the run again"
scripts/cohort.sh "$work/slides" "$out" > "$work/run-2.log" 2>&1 || fail "the second run failed: $(tail -20 "$work/run-2.log")"
while read -r file stamp; do
  [ "$(stat -c '%Y.%y' "$file")" = "$stamp" ] || fail "$file was recomputed after the kill"
done <<< "$done_before"
check "$slides_total" <<'EOF'
import csv, json, sys
from pathlib import Path
out, total = Path(sys.argv[1]), int(sys.argv[2])
rows = {r["name"]: r for r in csv.DictReader(open(out / "cohort.csv"))}
assert len(rows) == total, sorted(rows)
bad = rows.pop("corrupt")
assert bad["status"] == "failed" and bad["exit_code"] == "65", bad
assert "cannot read the image" in bad["error"], bad["error"]
for name, row in rows.items():
    assert row["status"] == "ok", (name, row["error"])
    summary = json.load(open(out / "slides" / name / "summary.json"))
    assert float(row["slide_score"]) == summary["slide_score"], name
cohort = json.load(open(out / "cohort.json"))
assert (cohort["ok"], cohort["failed"]) == (total - 1, 1), cohort
page = (out / "index.html").read_text()
assert all(f"slides/{name}/overlay.png" in page for name in rows)
assert "logs/corrupt.log" in page
print(f"  {len(rows)} slides scored, 'corrupt' failed: {bad['error']}")
EOF

echo "workflow test: a run with nothing changed"
before=$(mtimes)
scripts/cohort.sh "$work/slides" "$out" > "$work/run-3.log" 2>&1 || fail "the third run failed: $(tail -20 "$work/run-3.log")"
grep -q "Nothing to be done" "$work/run-3.log" || fail "the third run did work: $(cat "$work/run-3.log")"
[ "$(mtimes)" = "$before" ] || fail "the third run rewrote outputs"

echo "workflow test: a CSV of slides with labels and a pixel size"
cat > "$work/cohort.csv" <<'EOF'
path,mpp,label
slides/lesions.png,,tumour
slides/field-of-view.png,0.5,normal
slides/corrupt.svs,,normal
EOF
out=$work/out-csv
scripts/cohort.sh "$work/cohort.csv" "$out" > "$work/run-4.log" 2>&1 || fail "the CSV run failed: $(tail -20 "$work/run-4.log")"
check <<'EOF'
import csv, json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = {r["name"]: r for r in csv.DictReader(open(out / "cohort.csv"))}
assert sorted(rows) == ["corrupt", "field-of-view", "lesions"], sorted(rows)
assert rows["field-of-view"]["mpp_source"] == "user" and float(rows["field-of-view"]["mpp"]) == 0.5
assert (rows["lesions"]["label"], rows["field-of-view"]["label"]) == ("1", "0")
m = json.load(open(out / "cohort.json"))["measures"]
assert (m["labelled"], m["scored"], m["positives"]) == (3, 2, 1), m
expected = 1.0 if float(rows["lesions"]["slide_probability"]) > float(rows["field-of-view"]["slide_probability"]) else 0.0
assert m["auc_probability"] == expected, m
print(f"  slide AUC {m['auc_probability']} over {m['scored']} labelled slides")
EOF
echo "workflow test: the Slurm profile's plan (a dry run)"
scripts/cohort.sh "$work/slides" "$work/out-slurm" --profile workflow/profiles/slurm --dry-run \
  > "$work/run-5.log" 2>&1 || fail "the Slurm dry run failed: $(tail -20 "$work/run-5.log")"
grep -Eq "^score_slide +$slides_total$" "$work/run-5.log" || fail "the Slurm plan lacks the slides: $(cat "$work/run-5.log")"
echo "workflow test: passed"
