#!/usr/bin/env bash
# loadtest/smoke.sh — a tiny run of scenario (a) against an already started stack, then one
# interrupted by SIGTERM (it must stop its hookline, remove its topics and exit 130), then one
# killed by SIGKILL (its hookline must stop by itself).
#
#   eval "$(dev/stack env)"        # or any HOOKLINE_KAFKA__BROKERS / HOOKLINE_REDIS__URL
#   loadtest/smoke.sh               # builds (debug) if needed, runs, exits non-zero on any loss
#
# Knobs: PROFILE=debug|release [debug], BIN_DIR (use the `hookline` and `loadtest` binaries
# there and build nothing), SMOKE_COUNT [300], SMOKE_DEADLINE [30] (seconds),
# SMOKE_OUT [artifacts/loadtest/smoke-<time>.json], SMOKE_PATH [http-batch] (or http-single,
# kafka). Exit codes: 0 ok, 3 something was lost / rejected / badly signed, other = error.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_DIR"

PROFILE=${PROFILE:-debug}
COUNT=${SMOKE_COUNT:-300}
DEADLINE=${SMOKE_DEADLINE:-30}
TRIGGER_PATH=${SMOKE_PATH:-http-batch}
OUT=${SMOKE_OUT:-artifacts/loadtest/smoke-$(date +%s).json}

if [[ -z ${HOOKLINE_KAFKA__BROKERS:-} ]]; then
  echo "smoke: HOOKLINE_KAFKA__BROKERS is not set; start the stack and run: eval \"\$(dev/stack env)\"" >&2
  exit 2
fi

if [[ -z ${BIN_DIR:-} ]]; then
  cargo_flags=()
  [[ $PROFILE == release ]] && cargo_flags+=(--release)
  cargo build --quiet "${cargo_flags[@]}" -p hookline -p hookline-loadtest
  BIN_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}/$PROFILE
fi

# Small on purpose: this proves the pipeline end to end (API → Kafka → router → dispatcher →
# signed HTTP → sink) and that nothing is lost; it measures nothing worth comparing.
"$BIN_DIR/loadtest" run a \
  --hookline "$BIN_DIR/hookline" \
  --path "$TRIGGER_PATH" \
  --count "$COUNT" \
  --batch 50 \
  --duration 30 \
  --deadline "$DEADLINE" \
  --grace 1 \
  --partitions 4 \
  --verify-signatures \
  --quiet \
  --out "$OUT"

# Starts a run to stop (in the background) and waits until its `hookline all` answers:
# sets `lt` (the tool's pid) and `child` (hookline's).
start_victim() {
  local log=$1
  "$BIN_DIR/loadtest" run a --hookline "$BIN_DIR/hookline" --rate 20 --duration 120 --partitions 2 \
    --quiet --out "$log.json" >"$log" 2>&1 &
  lt=$!
  child=
  for _ in $(seq 1 1200); do
    # Past "creating ... endpoint(s)", the child has answered /readyz.
    if grep -q 'creating 1 endpoint' "$log"; then
      child=$(pgrep -P "$lt" -f 'hookline all' || true)
      break
    fi
    kill -0 "$lt" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z $child ]]; then
    cat "$log" >&2
    echo "smoke: the run to stop did not start its hookline" >&2
    kill -TERM "$lt" 2>/dev/null || true
    exit 1
  fi
}

# An interrupted run (SIGTERM, Ctrl-C) kills its `hookline all` and removes its topics and
# keyspace, then exits 130: nothing keeps loading the stack after the tool is gone.
ilog="$OUT.interrupted.log"
start_victim "$ilog"
kill -TERM "$lt"
rc=0
wait "$lt" || rc=$?
if [[ $rc != 130 ]] || kill -0 "$child" 2>/dev/null || ! grep -q '^loadtest: removed' "$ilog"; then
  cat "$ilog" >&2
  kill -KILL "$child" 2>/dev/null || true
  echo "smoke: an interrupted run must exit 130, stop hookline (pid $child) and remove its topics (exit $rc)" >&2
  exit 1
fi
echo "smoke: an interrupted run stopped its hookline and removed its topics (exit 130)"

# A run killed outright (SIGKILL: no clean-up can run) still does not leave its hookline
# loading the stack: the child watches its parent (HOOKLINE_EXIT_WITH_PARENT), drains and exits.
klog="$OUT.killed.log"
start_victim "$klog"
kill -KILL "$lt"
wait "$lt" 2>/dev/null || true
gone=
for _ in $(seq 1 300); do
  if ! kill -0 "$child" 2>/dev/null; then
    gone=1
    break
  fi
  sleep 0.1
done
if [[ -z $gone ]]; then
  cat "$klog" >&2
  kill -KILL "$child" 2>/dev/null || true
  echo "smoke: hookline (pid $child) still ran 30 s after its load test was killed" >&2
  exit 1
fi
echo "smoke: a killed run's hookline stopped by itself"
