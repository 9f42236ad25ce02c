"""One slide of the cohort workflow: `celnet heatmap` into the status file's folder, then the
status file itself, written last and atomically.

Exit 0 when the slide is done, scored or failed for good (the status says which); the heatmap's
own exit status when another try may pass, so that the workflow engine retries it.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

# celnet heatmap's exit statuses that a retry cannot change: the input is unusable or missing.
INPUT_FAILURES = {65: "the input cannot be used", 66: "the input is missing"}


def last_error(log_text):
    """The error celnet reported: its last `error: ` line."""
    errors = [line[len("error: "):] for line in log_text.splitlines() if line.startswith("error: ")]
    return errors[-1] if errors else None


def write_status(path, status):
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(status, indent=1) + "\n")
    os.replace(partial, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--celnet", required=True)
    parser.add_argument("--slide", required=True)
    parser.add_argument("--status", required=True, type=Path)
    parser.add_argument("--log", required=True, type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mpp", default="")
    parser.add_argument("--attempt", type=int, default=1)
    parser.add_argument("--tries", type=int, default=1)
    parser.add_argument("heatmap_args", nargs="*")
    args = parser.parse_args()

    out = args.status.parent
    command = [args.celnet, "--threads", str(args.threads), "heatmap", args.slide, "-o", str(out)]
    if args.mpp:
        command += ["--mpp", args.mpp]
    command += args.heatmap_args
    args.log.parent.mkdir(parents=True, exist_ok=True)
    # Every try's output is kept, one after another.
    with open(args.log, "a") as log:
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        log.write(f"== try {args.attempt} of {args.tries}, {now}: {' '.join(command)}\n")
        log.flush()
        start = len(args.log.read_text())
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
    this_try = args.log.read_text()[start:]
    if code == 0:
        write_status(args.status, {"file": args.slide, "status": "ok", "attempts": args.attempt})
        return 0
    last_try = code in INPUT_FAILURES or args.attempt >= args.tries
    if not last_try:
        print(f"{args.slide}: celnet exited with {code}; another try follows", file=sys.stderr)
        return code if 0 < code < 256 else 1
    error = last_error(this_try) or (
        f"celnet was killed by signal {-code}" if code < 0 else f"celnet exited with {code}")
    write_status(args.status, {
        "file": args.slide,
        "status": "failed",
        "error": error,
        "exit_code": code,
        "attempts": args.attempt,
        "log": str(args.log),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
