#!/usr/bin/env bash
# The seeded data-efficiency sweep: sampling method x ratio x seed as DVC experiments, then the report.
#
#   scripts/sweep.sh                 # from the repository root (a git repo with dvc.yaml committed)
#   SEEDS=3 ABLATION=1 scripts/sweep.sh
#
# Queues one `dvc exp run --queue -S sample.method=M -S sample.ratio=R -S train.seed=S -S sample.seed=S` per
# (method, ratio, seed): methods nc random kcenter at ratios 0.05 0.1 0.25, and `full` (every train clip: the
# ratio 1 point; a sampler at ratio 1 keeps every clip too, so those runs are not queued) once per seed.
# Default: (3 methods x 3 ratios + full) x 5 seeds = 50 experiments. Every method keeps the same number of
# clips per class at a ratio (equal budgets, pipeline/sampling/budget.py).
# Methods: nc random kcenter farthest margin generator_balanced full (params sample.method). `nc` runs once per
# order in NC_ORDERS (default "nearest", which then passes no -S; also farthest, stratified: `-S sample.nc.order=O`,
# labelled nc:O in the report); a METHODS entry nc:O runs that order alone. The selection sweep of issue 23 (5 seeds, 95 runs):
#   METHODS="nc random margin generator_balanced full" NC_ORDERS="nearest farthest stratified" scripts/sweep.sh
# sweep_export then writes every method's paired difference to full and to random (reports/sweep_paired.csv).
# EVAL_SETS (e.g. "seen_attacks,unseen_attacks,paradigm,corpus,dev") sets evaluate.sets in every run: `dev` adds
# the dev split's EER (left out of pooled), on which to choose sample.nc.order without looking at the test sets.
# ABLATION=1 adds, for the methods in ABLATION_METHODS (default "nc full"), the same runs trained without the
# hard fakes (`-S 'train.exclude_paradigms=[vocoder,codec,diffusion]'`: bona fide + training attacks only):
# 20 more by default (70 in all). ABLATION_RATIOS limits those to some ratios (default: all; full runs always).
# PAIR=1 adds, for PAIR_METHODS (default "nc full") at PAIR_RATIOS, the same runs with parent-paired batches
# (PAIR_ARGS, default `-S train.pair_batches=true`). COMMON_ARGS (space-separated `-S key=value`) go into every run,
# e.g. the fine-tune of an imported AASIST (README, "Pretrained detectors") or `-S evaluate.conditions=[]`.
# AUGMENT=1 adds, for AUGMENT_METHODS (default "nc full") at AUGMENT_RATIOS (default: all), the same runs with
# training augmentation on (AUGMENT_ARGS, default RawBoost p 0.5 + gain p 0.5): augmentation on vs off over seeds. The report groups experiments by (method, ratio, other changed params) and
# shows the mean and 95% CI over seeds (pipeline/reporting/seeds.py).
# Each experiment runs the pipeline up to TARGET (default `evaluate`): the report stage reads every experiment
# at the end, so running it inside each one would only cost time (~45 s each).
# Then it starts the queue (`dvc queue start`), waits until no experiment is queued or running, lists them
# (`dvc exp show`), writes reports/sweep.csv, sweep_paired.csv, sweep_runs.csv and sweep.md (grouped table, paired differences, verdicts:
# commit them, experiments stay local) and re-runs the `report` stage.
# Queued experiments run in temporary copies of the last commit (plus uncommitted changes at queue time):
# run `dvc repro` and commit dvc.lock first, so that the stages up to `embed` come from the DVC cache
# and each experiment re-runs only sample -> train -> evaluate -> report.
# Environment: RATIOS, METHODS (space-separated lists), SEEDS (seeds 1..SEEDS, default 5), ABLATION (1 = add
# the ablation), ABLATION_METHODS, ABLATION_EXCLUDE (default "[vocoder,codec,diffusion]"), NC_ORDERS, JOBS (parallel
# queue workers, default 1; 2 on a 2-core machine gives ~1 experiment per minute), TARGET (last stage of each
# experiment, default evaluate), POLL_S (seconds between status checks, default 30), DVC (default `dvc`),
# DRY_RUN (1 = print the queue commands and stop).
set -euo pipefail

RATIOS=${RATIOS:-"0.05 0.1 0.25 1.0"}
METHODS=${METHODS:-"nc random kcenter full"}
EXPLICIT_ORDERS=${NC_ORDERS:+1}   # NC_ORDERS given: every nc run names its order, nearest too
NC_ORDERS=${NC_ORDERS:-"nearest"}
EVAL_SETS=${EVAL_SETS:-""}
SEEDS=${SEEDS:-5}
ABLATION=${ABLATION:-0}
ABLATION_METHODS=${ABLATION_METHODS:-"nc full"}
ABLATION_EXCLUDE=${ABLATION_EXCLUDE:-"[vocoder,codec,diffusion]"}
ABLATION_RATIOS=${ABLATION_RATIOS:-$RATIOS}
COMMON_ARGS=${COMMON_ARGS:-""}   # extra `-S key=value` args for every run, e.g. an AASIST fine-tune (README)
PAIR=${PAIR:-0}
PAIR_METHODS=${PAIR_METHODS:-"nc full"}
PAIR_RATIOS=${PAIR_RATIOS:-$RATIOS}
PAIR_ARGS=${PAIR_ARGS:-"-S train.pair_batches=true"}
AUGMENT=${AUGMENT:-0}
AUGMENT_METHODS=${AUGMENT_METHODS:-"nc full"}
AUGMENT_RATIOS=${AUGMENT_RATIOS:-$RATIOS}
AUGMENT_ARGS=${AUGMENT_ARGS:-"-S train.augment.enabled=true -S train.augment.rawboost_prob=0.5 -S train.augment.gain_prob=0.5"}
DRY_RUN=${DRY_RUN:-0}
JOBS=${JOBS:-1}
POLL_S=${POLL_S:-30}
DVC=${DVC:-dvc}
TARGET=${TARGET:-evaluate}

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

if ! [[ "$SEEDS" =~ ^[1-9][0-9]*$ ]]; then
  echo "sweep.sh: SEEDS must be a positive integer (the number of seeds), got '$SEEDS'" >&2
  exit 2
fi

in_list() {  # in_list RATIO "LIST": RATIO is in LIST, or it is the full run's 1.0
  local r
  if [[ "$1" == 1.0 ]]; then return 0; fi
  for r in $2; do
    if awk "BEGIN{exit !($1 == $r)}"; then return 0; fi
  done
  return 1
}

n=0
queue() {  # queue one experiment (or print it with DRY_RUN=1)
  echo "queue: $*"
  if [[ "$DRY_RUN" != 1 ]]; then
    "$DVC" exp run --queue "$TARGET" "$@"
  fi
  n=$((n + 1))
}

KNOWN_METHODS=" nc random full kcenter farthest margin generator_balanced "
KNOWN_ORDERS=" nearest farthest stratified "
points=()                      # method[:order] labels, as the report names them
for entry in $METHODS; do
  method=${entry%%:*}
  if [[ "$KNOWN_METHODS" != *" $method "* ]]; then
    echo "sweep.sh: unknown method '$method' in METHODS (known:$KNOWN_METHODS)" >&2
    exit 2
  fi
  orders=""
  if [[ "$entry" == nc:* ]]; then orders=${entry#nc:}; elif [[ "$method" == nc ]]; then orders=$NC_ORDERS; fi
  if [[ -z "$orders" ]]; then points+=("$method"); continue; fi
  for order in $orders; do
    if [[ "$KNOWN_ORDERS" != *" $order "* ]]; then
      echo "sweep.sh: unknown NC order '$order' (known:$KNOWN_ORDERS)" >&2
      exit 2
    fi
    if [[ "$order" == nearest ]]; then points+=("nc"); else points+=("nc:$order"); fi
  done
done

for seed in $(seq 1 "$SEEDS"); do
  for label in "${points[@]}"; do
    method=${label%%:*}
    if [[ "$method" == full ]]; then
      ratios=1.0                     # full ignores the ratio: one run per seed
    else
      ratios=""
      for ratio in $RATIOS; do       # at ratio 1 every sampler keeps every clip: that is the full run
        if awk "BEGIN{exit !($ratio < 1)}"; then ratios="$ratios $ratio"; fi
      done
    fi
    for ratio in $ratios; do
      args=(-S "sample.method=$method" -S "sample.ratio=$ratio" -S "train.seed=$seed" -S "sample.seed=$seed")
      if [[ "$method" == nc ]]; then   # the default (nearest) alone stays implicit: older params lack sample.nc
        order=nearest
        if [[ "$label" == nc:* ]]; then order=${label#nc:}; fi
        if [[ "$order" != nearest || -n "$EXPLICIT_ORDERS" ]]; then args+=(-S "sample.nc.order=$order"); fi
      fi
      if [[ -n "$EVAL_SETS" ]]; then args+=(-S "evaluate.sets=[$EVAL_SETS]"); fi
      if [[ -n "$COMMON_ARGS" ]]; then read -r -a common <<<"$COMMON_ARGS"; args+=("${common[@]}"); fi
      queue "${args[@]}"
      if [[ "$ABLATION" == 1 ]] && [[ " $ABLATION_METHODS " == *" $label "* ]] && in_list "$ratio" "$ABLATION_RATIOS"; then
        queue "${args[@]}" -S "train.exclude_paradigms=$ABLATION_EXCLUDE"
      fi
      if [[ "$PAIR" == 1 ]] && [[ " $PAIR_METHODS " == *" $label "* ]] && in_list "$ratio" "$PAIR_RATIOS"; then
        read -r -a extra <<<"$PAIR_ARGS"
        queue "${args[@]}" "${extra[@]}"
      fi
      if [[ "$AUGMENT" == 1 ]] && [[ " $AUGMENT_METHODS " == *" $label "* ]] && in_list "$ratio" "$AUGMENT_RATIOS"; then
        read -r -a extra <<<"$AUGMENT_ARGS"
        queue "${args[@]}" "${extra[@]}"
      fi
    done
  done
done
if [[ "$DRY_RUN" == 1 ]]; then
  echo "dry run: $n experiments would be queued"
  exit 0
fi
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
# Experiments are local git refs (a clone has none): keep the grouped sweep as committed text too.
python -m pipeline.reporting.sweep_export --repo . --out reports || echo "sweep.sh: no sweep table written" >&2
# The report reads `dvc exp show --json`, which dvc does not track: force the stage to run again.
"$DVC" repro --force --single-item report
echo "sweep done: open reports/index.html (section 'Data efficiency')"
