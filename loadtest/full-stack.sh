#!/usr/bin/env bash
# loadtest/full-stack.sh — steady load through the whole stack (projector and Cassandra
# included), polling consumer and projector lag each second, then a timed projector rebuild.
#
#   RATE=100 DUR=20 loadtest/full-stack.sh        # needs target/release/{hookline,loadtest}
#
# Runs its own stack on 29092/29042/26379 under .stack/measure and stops it at the end.
# Output: artifacts/loadtest/full-stack-{steady.json,steady.txt,lag.log,rebuild.txt}.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=artifacts/loadtest; mkdir -p "$OUT"
export HOOKLINE_STACK_DIR=$PWD/.stack/measure KAFKA_PORT=29092 KAFKA_CONTROLLER_PORT=29093 CQL_PORT=29042 \
  CASSANDRA_STORAGE_PORT=27000 REDIS_PORT=26379
dev/stack up >"$OUT/full-stack-stack.log" 2>&1
trap 'kill -TERM ${HP:-0} 2>/dev/null || true; dev/stack down --wipe >/dev/null 2>&1 || true' EXIT
eval "$(dev/stack env)"
BIN=target/release/hookline
TOKEN=measure-token
export HOOKLINE_KAFKA__TOPIC_PREFIX=ms1. HOOKLINE_CQL__KEYSPACE=ms1 HOOKLINE_REDIS__KEY_PREFIX=ms1:
export HOOKLINE_API__LISTEN=127.0.0.1:28080 HOOKLINE_DISPATCHER__SSRF_ALLOW='["127.0.0.0/8"]'
export HOOKLINE_API__TOKENS="[{name = \"m\", tenant = \"*\", sha256 = \"$(printf %s $TOKEN | sha256sum | cut -d' ' -f1)\"}]"
export HOOKLINE_SECRETS__MASTER_KEYS=$($BIN secrets new-master-key --id m1)
$BIN topics create >/dev/null && $BIN schema migrate >/dev/null
$BIN all 2>"$OUT/full-stack-hookline.log" & HP=$!
for _ in $(seq 1 200); do [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:28080/readyz)" = 200 ] && break; sleep 0.2; done
sleep 3
lagfmt='import json, sys, time
d = json.load(sys.stdin)
print(int(time.time()), " ".join("%s/%s=%d" % (g["group"].split(".")[-1], g["topic"].split(".")[-1], g["total_lag"]) for g in d["groups"]))'
( for _ in $(seq 1 $(( ${DUR:-20} + 15 ))); do
    curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:28080/api/system/lag | python3 -c "$lagfmt"; sleep 1
  done ) >"$OUT/full-stack-lag.log" 2>&1 & LP=$!
target/release/loadtest run a --api http://127.0.0.1:28080 --token $TOKEN --prefix ms1. --rate "${RATE:-100}" \
  --duration "${DUR:-20}" --out "$OUT/full-stack-steady.json" --quiet >"$OUT/full-stack-steady.txt" 2>&1 || true
wait $LP || true
kill -TERM $HP; wait $HP || true; HP=
start=$(date +%s.%N)
$BIN projector rebuild >"$OUT/full-stack-rebuild.txt" 2>"$OUT/full-stack-rebuild.log"
echo "rebuild wall seconds (incl. 5 s grace before dropping the old set): $(echo "$(date +%s.%N) - $start" | bc)" >>"$OUT/full-stack-rebuild.txt"
grep -E '^(triggers|deliveries|latency|verdict)' "$OUT/full-stack-steady.txt"
grep -E 'rebuild: (replaying|caught up)' "$OUT/full-stack-rebuild.log" | cut -c1-120
cat "$OUT/full-stack-rebuild.txt"
