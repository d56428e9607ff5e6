#!/usr/bin/env bash
# The data-efficiency sweep: sampling ratio x sampling method as DVC experiments, then the report's curve.
#
#   scripts/sweep.sh                 # from the repository root (a git repo with dvc.yaml committed)
#
# Queues one `dvc exp run --queue -S sample.ratio=R -S sample.method=M` per pair (10 by default: ratios
# 0.01 0.05 0.1 0.25 1.0 x methods nc random), starts the queue (`dvc queue start`), waits until no
# experiment is queued or running, lists them (`dvc exp show`), and re-runs the `report` stage so that
# reports/index.html draws EER against ratio for each method and eval set.
# Every experiment sets both keys: `-S` applies on top of the workspace's params.yaml.
# Queued experiments run in temporary copies of the last commit (plus uncommitted changes at queue time):
# run `dvc repro` and commit dvc.lock first, so that the stages up to `embed` come from the DVC cache
# and each experiment re-runs only sample -> train -> evaluate -> report.
# Environment: RATIOS, METHODS (space-separated lists), JOBS (parallel queue workers, default 1),
# POLL_S (seconds between status checks, default 30), DVC (the dvc executable, default `dvc`).
set -euo pipefail

RATIOS=${RATIOS:-"0.01 0.05 0.1 0.25 1.0"}
METHODS=${METHODS:-"nc random"}
JOBS=${JOBS:-1}
POLL_S=${POLL_S:-30}
DVC=${DVC:-dvc}

if [[ ! -f dvc.yaml ]]; then
  echo "sweep.sh: run from the repository root (no dvc.yaml in $(pwd))" >&2
  exit 2
fi
if ! git rev-parse --verify -q HEAD >/dev/null; then
  echo "sweep.sh: DVC experiments need a git repository with at least one commit" >&2
  exit 2
fi

if [[ ! -f dvc.lock ]] || [[ -n "$(git status --porcelain -- dvc.lock)" ]]; then
  echo "sweep.sh: warning: dvc.lock is missing or not committed; every experiment may re-run the whole pipeline" >&2
fi

n=0
for method in $METHODS; do
  for ratio in $RATIOS; do
    echo "queue: sample.method=$method sample.ratio=$ratio"
    "$DVC" exp run --queue -S "sample.ratio=$ratio" -S "sample.method=$method"
    n=$((n + 1))
  done
done
echo "queued $n experiments; starting $JOBS worker(s)"
"$DVC" queue start -j "$JOBS"

# `dvc queue status` lists one task per line with its state; wait until none is Queued or Running.
while true; do
  status=$("$DVC" queue status 2>/dev/null || true)
  pending=$(grep -cE '\b(Queued|Running)\b' <<<"$status" || true)
  if [[ "$pending" -eq 0 ]]; then
    break
  fi
  echo "$(date +%H:%M:%S) $pending experiment(s) queued or running"
  sleep "$POLL_S"
done
"$DVC" queue status || true
failed=$(grep -cE '\bFailed\b' <<<"$("$DVC" queue status 2>/dev/null || true)" || true)
if [[ "$failed" -gt 0 ]]; then
  echo "sweep.sh: $failed experiment(s) failed; see \`dvc queue logs <name>\`" >&2
fi

"$DVC" exp show --no-pager --only-changed || true
# The report reads `dvc exp show --json`, which dvc does not track: force the stage to run again.
"$DVC" repro --force --single-item report
echo "sweep done: open reports/index.html (section 'Data efficiency')"
