#!/usr/bin/env bash
# Soak: CONNS co-located connections (worker processes on both sides) held for DURATION while
# the server broadcasts every EVERY. Samples both process trees every SAMPLE seconds (RSS, open
# descriptors, CPU) and the kernel's TCP sockets, then judges what must stay flat: user RSS
# from minute 5 to the end (≤ 1 %; a minute's median each way, bench/soak_judge.py),
# descriptors and sockets, broadcast time and p99 (first ten minutes against the last ten),
# and 0 missed, 0 errors. Prints a table and appends it to BENCHMARKS.md. A benchmark, not a
# test: it asserts nothing. `python3 bench/soak_judge.py OUT ...` judges a kept run again.
#
#   bench/soak.sh                                   # 100,000 for 1 h, a broadcast every 5 s
#   DURATION=600 CONNS=20000 bench/soak.sh          # a shorter one
#   APPEND=0 DURATION=90 STEADY=30 WINDOW=30 bench/soak.sh   # a trial, not recorded
#   CLIENT=tui bench/soak.sh                        # the client is the console, in a tmux
#                                                   # pane, also judged on its frame rate
#
# "tree" = a parent and its worker processes. RSS is VmRSS summed over the tree; CPU is user +
# system time of the tree; descriptors are /proc/PID/fd entries summed over the tree; sockets
# are /proc/net/sockstat's TCP inuse and tw. Broadcast time is the client's delivery_us (first
# send → last receive), p99 its per-broadcast latency p99.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-100000}
DURATION=${DURATION:-3600}
EVERY=${EVERY:-5s}
SAMPLE=${SAMPLE:-10}
CLIENT=${CLIENT:-headless}
# Judged from STEADY seconds on (the ramp and warm-up before it), in windows of WINDOW seconds.
STEADY=${STEADY:-300}
WINDOW=${WINDOW:-600}
PORT=${PORT:-19290}
BIN=$PWD/target/release/c1m
START=$SECONDS

cargo build --release -q
OUT=$(mktemp -d /tmp/c1m-soak.XXXXXX)
HARD=$(ulimit -Hn)
[ "$HARD" = unlimited ] && HARD=1048576
ulimit -n "$HARD" 2>/dev/null || true
WORKERS=$(((CONNS + HARD - 101) / (HARD - 100)))
SOCK=c1m-soak-$$
tm() { tmux -L "$SOCK" -f /dev/null "$@"; }
trap 'tm kill-server 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true' EXIT

. bench/lib.sh
own_rss() { awk '/^VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
sockets() { awk '/^TCP:/{for(i=1;i<=NF;i++){if($i=="inuse")u=$(i+1); if($i=="tw")t=$(i+1)}} END{print u" "t}' /proc/net/sockstat; }

"$BIN" server --listen "127.0.0.1:$PORT" --every "$EVERY" --workers "$WORKERS" -q \
  --duration "$((DURATION + 300))s" --json "$OUT/server.json" >"$OUT/server.out" 2>"$OUT/server.err" &
SPID=$!
wait_for 30 grep -q listening "$OUT/server.err"
CLIENT_ARGS=(--url "ws://127.0.0.1:$PORT/" --conns "$CONNS" --rate 0 --workers "$WORKERS"
  --duration "${DURATION}s" --json "$OUT/client.json")
if [ "$CLIENT" = tui ]; then
  tm new-session -d -s soak -x 140 -y 45 \
    "exec env C1M_TUI_FRAMES_LOG=$OUT/frames.log $BIN tui --mode client ${CLIENT_ARGS[*]} 2>$OUT/client.err"
  # The pane's process is the console itself (exec): its workers are its children.
  CPID=$(tm list-panes -t soak -F '#{pane_pid}')
else
  "$BIN" client "${CLIENT_ARGS[@]}" >"$OUT/client.out" 2>"$OUT/client.err" &
  CPID=$!
fi
T0=$SECONDS
echo "bench: soak of $CONNS for ${DURATION}s ($CLIENT client), samples in $OUT/samples"
echo "t srss sfds scpu crss cfds ccpu tcp tw spar cpar" >"$OUT/samples"
while kill -0 "$CPID" 2>/dev/null; do
  echo "$((SECONDS - T0)) $(tree_sum $SPID rss) $(tree_sum $SPID fds) $(tree_sum $SPID cpu)" \
    "$(tree_sum "$CPID" rss) $(tree_sum "$CPID" fds) $(tree_sum "$CPID" cpu) $(sockets)" \
    "$(own_rss $SPID) $(own_rss "$CPID")" >>"$OUT/samples"
  sleep "$SAMPLE"
done
kill -TERM $SPID; wait $SPID || true
TOTAL=$((SECONDS - START))

python3 bench/soak_judge.py "$OUT" "$DURATION" "$CLIENT" "$STEADY" "$WINDOW" "$EVERY" | tee "$OUT/table.md"
echo "whole run: ${TOTAL} s; reports and samples in $OUT"
[ "${APPEND:-1}" = 1 ] || exit 0
{
  echo
  echo "## bench/soak.sh, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "\`CLIENT=$CLIENT CONNS=$CONNS DURATION=$DURATION EVERY=$EVERY STEADY=$STEADY WINDOW=$WINDOW bench/soak.sh\` on $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $WORKERS workers a side; whole run ${TOTAL} s. RSS is each side's tree (parent and workers): the median of the first minute from STEADY against the median of the last minute the client held all its connections, and the least-squares trend between (bench/soak_judge.py); the broadcast columns are the median delivery (first send → last receive) and the median per-broadcast p99, with the number of broadcasts in the window."
  echo
  cat "$OUT/table.md"
} >>BENCHMARKS.md
