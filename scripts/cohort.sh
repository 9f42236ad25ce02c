#!/usr/bin/env bash
# Scores every slide in SLIDES (a folder, or a CSV with a `path` column and optional `mpp` and
# `label` columns) with the Snakemake workflow in workflow/, locally on this machine's cores:
#
#   scripts/cohort.sh SLIDES OUT [snakemake arguments, e.g. --config threads=2]
#
# Writes OUT/slides/<name>/ per slide, and OUT/cohort.csv, OUT/cohort.json and OUT/index.html.
# A second run recomputes only what is missing or changed: the slides a killed run did not
# finish, new slides. Sets up Snakemake once (pinned, in workflow/.venv) and builds
# target/release/celnet if it is missing. Another profile: --profile workflow/profiles/slurm.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

if [ $# -lt 2 ]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
slides=$(realpath "$1")
out=$(realpath -m "$2")
shift 2

venv=$root/workflow/.venv
if ! cmp -s "$root/workflow/requirements.txt" "$venv/requirements.txt" 2>/dev/null; then
  echo "cohort: installing Snakemake into workflow/.venv (once)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/workflow/requirements.txt"
  cp "$root/workflow/requirements.txt" "$venv/requirements.txt"
fi

celnet=${CELNET:-$root/target/release/celnet}
if [ ! -x "$celnet" ]; then
  echo "cohort: building $celnet (once, several minutes)" >&2
  (cd "$root" && cargo build --release --bin celnet)
fi

mkdir -p "$out"
# One run at a time on OUT. With that settled, a lock a killed run left behind is stale.
exec 9>"$out/.cohort.lock"
if ! flock -n 9; then
  echo "cohort: another run is writing $out" >&2
  exit 1
fi
cat > "$out/.cohort-config.yaml" <<YAML
slides: "$slides"
out: "$out"
celnet: "$celnet"
YAML
snakemake=("$venv/bin/snakemake" --snakefile "$root/workflow/Snakefile" --directory "$out"
  --configfile "$out/.cohort-config.yaml")
"${snakemake[@]}" --unlock --cores 1 > /dev/null 2>&1 || true
has_profile=false
for arg in "$@"; do
  case $arg in --profile|--profile=*|--workflow-profile|--workflow-profile=*) has_profile=true ;; esac
done
if ! $has_profile; then
  snakemake+=(--profile "$root/workflow/profiles/local")
fi
"${snakemake[@]}" "$@"
