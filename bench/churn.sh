#!/usr/bin/env bash
# Churn, two ways, co-located on loopback with worker processes on both sides:
#   restarts  the server is stopped (SIGTERM) and started again RESTARTS times under CONNS
#             connections held by `c1m client --reconnect`: how long until 90 % and all of
#             them are back, each time; the client's RSS and descriptors against their level
#             after the first ramp; every loss and reconnect accounted.
#   churn     `c1m client --churn RATE` for CHURN_S seconds under a broadcast every 5 s: every
#             cycle accounted (established = closed + open), RSS and descriptors over the run,
#             TIME_WAIT on the client's ports and on the server's, the server's descriptors
#             once the client is gone.
# Prints a table per part and appends them to BENCHMARKS.md. A benchmark: it asserts nothing.
#
#   bench/churn.sh                                  # both: 100,000; 20 restarts; 10 %/s × 600 s
#   PARTS=churn CHURN_S=60 CONNS=20000 bench/churn.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-100000}
RESTARTS=${RESTARTS:-20}
RATE=${RATE:-10%}
CHURN_S=${CHURN_S:-600}
PARTS=${PARTS:-"restarts churn"}
PORT=${PORT:-19390}
BIN=$PWD/target/release/c1m
START=$SECONDS

cargo build --release -q
OUT=$(mktemp -d /tmp/c1m-churn.XXXXXX)
HARD=$(ulimit -Hn)
[ "$HARD" = unlimited ] && HARD=1048576
ulimit -n "$HARD" 2>/dev/null || true
WORKERS=$(((CONNS + HARD - 101) / (HARD - 100)))
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
. bench/lib.sh

tw() { ss -Htan state time-wait "( $1 = :$PORT )" | wc -l; }
# The client's open connections, from its latest status line.
open_now() { grep -o 'conns [0-9]*/' "$1" | tail -1 | tr -dc 0-9; }
open_at_least() { [ "$(open_now "$1")" -ge "$2" ] 2>/dev/null; }
open_below() { [ "$(open_now "$1")" -lt "$2" ] 2>/dev/null; }
now_ms() { date +%s%3N; }

start_server() { # start_server DIR EVERY
  "$BIN" server --listen "127.0.0.1:$PORT" --every "$2" --workers "$WORKERS" -q --duration 3h \
    --json "$1/server.json" >>"$1/server.out" 2>>"$1/server.err" &
  SPID=$!
  wait_for 30 grep -q listening "$1/server.err"
}

restarts() {
  local dir=$OUT/restarts; mkdir -p "$dir"
  start_server "$dir" off
  "$BIN" client --url "ws://127.0.0.1:$PORT/" --conns "$CONNS" --rate 0 --workers "$WORKERS" \
    --reconnect --duration 3h --json "$dir/client.json" >"$dir/client.out" 2>"$dir/client.err" &
  local cpid=$!
  wait_for 120 open_at_least "$dir/client.err" "$CONNS"
  sleep 5
  local rss0 fds0; rss0=$(tree_sum $cpid rss); fds0=$(tree_sum $cpid fds)
  echo "cycle back90_s back_s client_rss_kb client_fds client_tw" >"$dir/cycles"
  for k in $(seq "$RESTARTS"); do
    kill -TERM $SPID; wait $SPID || true
    wait_for 30 open_below "$dir/client.err" "$((CONNS / 10))" || true
    : >"$dir/server.err"
    start_server "$dir" off
    local t0; t0=$(now_ms)
    wait_for 120 open_at_least "$dir/client.err" "$((CONNS * 9 / 10))" || true
    local t90; t90=$(now_ms)
    wait_for 120 open_at_least "$dir/client.err" "$CONNS" || true
    local t100; t100=$(now_ms)
    echo "$k $(((t90 - t0) / 100))e-1 $(((t100 - t0) / 100))e-1 $(tree_sum $cpid rss) $(tree_sum $cpid fds) $(tw dport)" >>"$dir/cycles"
    sleep 3
  done
  sleep 10
  local rss1 fds1; rss1=$(tree_sum $cpid rss); fds1=$(tree_sum $cpid fds)
  kill -TERM $cpid; wait $cpid || true
  kill -TERM $SPID; wait $SPID || true
  python3 - "$dir" "$CONNS" "$rss0" "$fds0" "$rss1" "$fds1" <<'PY' | tee "$OUT/restarts.md"
import json, sys, statistics as st
d, n, rss0, fds0, rss1, fds1 = sys.argv[1], *map(int, sys.argv[2:])
rows = [l.split() for l in open(f"{d}/cycles")][1:]
b90 = [float(r[1]) for r in rows]
b100 = [float(r[2]) for r in rows]
c = json.load(open(f"{d}/client.json"))
conns, errs = c["connections"], c["errors"]["by_class"]
print("| restarts | connections | 90 % back, s (median / max) | all back, s (median / max) | established | reconnects | errors by class | missed | client RSS after ramp → after last | client fds after ramp → after last |")
print("|---|---|---|---|---|---|---|---|---|---|")
print(f"| {len(rows)} | {n:,} | {st.median(b90):.1f} / {max(b90):.1f} | {st.median(b100):.1f} / {max(b100):.1f} | "
      f"{conns['established']:,} | {conns['reconnects']:,} | {', '.join(f'{k} {v:,}' for k, v in errs.items() if v)} | "
      f"{c['messages']['missed']} | {rss0/1024:.1f} → {rss1/1024:.1f} MiB | {fds0:,} → {fds1:,} |")
PY
}

churn() {
  local dir=$OUT/churn; mkdir -p "$dir"
  start_server "$dir" 5s
  local sfds0; sfds0=$(tree_sum $SPID fds)
  "$BIN" client --url "ws://127.0.0.1:$PORT/" --conns "$CONNS" --rate 0 --workers "$WORKERS" \
    --churn "$RATE" --duration "${CHURN_S}s" --json "$dir/client.json" >"$dir/client.out" 2>"$dir/client.err" &
  local cpid=$!
  local t0=$SECONDS
  echo "t client_rss_kb client_fds server_fds tw_client tw_server" >"$dir/samples"
  while kill -0 $cpid 2>/dev/null; do
    echo "$((SECONDS - t0)) $(tree_sum $cpid rss) $(tree_sum $cpid fds) $(tree_sum $SPID fds) $(tw dport) $(tw sport)" >>"$dir/samples"
    sleep 10
  done
  wait $cpid || true
  sleep 5
  local sfds1; sfds1=$(tree_sum $SPID fds)
  kill -TERM $SPID; wait $SPID || true
  python3 - "$dir" "$CONNS" "$RATE" "$sfds0" "$sfds1" <<'PY' | tee "$OUT/churn.md"
import json, sys
d, n, rate, sfds0, sfds1 = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rows = [list(map(int, l.split())) for l in list(open(f"{d}/samples"))[1:]]
steady = [r for r in rows if r[0] >= 60]
a, b = steady[0], steady[-1]
c = json.load(open(f"{d}/client.json"))
s = json.load(open(f"{d}/server.json"))
k = c["connections"]
span = lambda i: f"{min(r[i] for r in steady):,}–{max(r[i] for r in steady):,}"
print("| churn | length | established | churned | closed | established − closed | N + churned − established | errors cli/srv (srv: in its last 15 s, as the client ended) | missed | client RSS 1 min → end | client fds (min–max) | TIME_WAIT client ports (max) | TIME_WAIT server port (max) | server fds before → after |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
last = max(p["t_s"] for p in s["series"]) if s["series"] else 0
srv_end = sum(p["errors"] for p in s["series"] if p["t_s"] >= last - 15)
print(f"| {rate} of {n:,} | {rows[-1][0]} s | {k['established']:,} | {k['churned']:,} | {k['closed']:,} | {k['established'] - k['closed']:,} | {n + k['churned'] - k['established']:,} | "
      f"{c['errors']['total']}/{s['errors']['total']} ({srv_end}) | {c['messages']['missed']} | {a[1]/1024:.1f} → {b[1]/1024:.1f} MiB | {span(2)} | "
      f"{max(r[4] for r in rows):,} | {max(r[5] for r in rows):,} | {sfds0:,} → {sfds1:,} |")
PY
}

for part in $PARTS; do "$part"; done
TOTAL=$((SECONDS - START))
echo "whole run: ${TOTAL} s; reports in $OUT"
[ "${APPEND:-1}" = 1 ] || exit 0
{
  echo
  echo "## bench/churn.sh, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "\`PARTS=\"$PARTS\" CONNS=$CONNS RESTARTS=$RESTARTS RATE=$RATE CHURN_S=$CHURN_S bench/churn.sh\` on $(nproc) cores, $WORKERS workers a side; whole run ${TOTAL} s."
  for part in $PARTS; do echo; cat "$OUT/$part.md"; done
} >>BENCHMARKS.md
