#!/usr/bin/env bash
# Soak: CONNS co-located connections (worker processes on both sides) held for DURATION while
# the server broadcasts every EVERY. Samples both process trees every SAMPLE seconds (RSS, open
# descriptors, CPU) and the kernel's TCP sockets, then judges what must stay flat: user RSS
# from minute 5 to the end (≤ 1 %), descriptors and sockets, broadcast time and p99 (first ten
# minutes against the last ten), and 0 missed, 0 errors. Prints a table and appends it to
# BENCHMARKS.md. A benchmark, not a test: it asserts nothing.
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
echo "t srss sfds scpu crss cfds ccpu tcp tw" >"$OUT/samples"
while kill -0 "$CPID" 2>/dev/null; do
  echo "$((SECONDS - T0)) $(tree_sum $SPID rss) $(tree_sum $SPID fds) $(tree_sum $SPID cpu)" \
    "$(tree_sum "$CPID" rss) $(tree_sum "$CPID" fds) $(tree_sum "$CPID" cpu) $(sockets)" >>"$OUT/samples"
  sleep "$SAMPLE"
done
kill -TERM $SPID; wait $SPID || true
TOTAL=$((SECONDS - START))

python3 - "$OUT" "$DURATION" "$CLIENT" "$STEADY" "$WINDOW" "$EVERY" <<'PY' | tee "$OUT/table.md"
import json, sys, statistics as st
out, duration, face = sys.argv[1], int(sys.argv[2]), sys.argv[3]
steady_from, win, every = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6].rstrip("s"))
rows = [l.split() for l in open(f"{out}/samples")][1:]
S = [dict(zip("t srss sfds scpu crss cfds ccpu tcp tw".split(), map(int, r))) for r in rows if len(r) == 9]
c = json.load(open(f"{out}/client.json"))
s = json.load(open(f"{out}/server.json"))
steady = [x for x in S if x["t"] >= steady_from]
a, b = steady[0], steady[-1]
growth = lambda k: (b[k] - a[k]) / a[k] * 100
span = lambda k: f"{min(x[k] for x in steady):,}–{max(x[k] for x in steady):,}"
rows_c = [r for r in c["broadcasts"] if r.get("delivery_us") is not None]
t_first = rows_c[0]["sent_ts_us"] if rows_c else 0
def window(lo, hi):
    w = [r for r in rows_c if lo <= (r["sent_ts_us"] - t_first) / 1e6 < hi]
    if not w:
        return "-"
    d = st.median(r["delivery_us"] for r in w) / 1e3
    p = st.median(r["latency_us"]["p99"] for r in w) / 1e3
    return f"{d:.0f} / {p:.0f} ms ({len(w)})"
end = (rows_c[-1]["sent_ts_us"] - t_first) / 1e6 if rows_c else 0
bcasts = sum(1 for r in s["broadcasts"] if r.get("first_us"))
in_steady = max(1, round((b["t"] - a["t"]) / every))
cpu = (b["scpu"] - a["scpu"] + b["ccpu"] - a["ccpu"]) / 100
res = {
    "connections": f"{c['connections']['peak']:,}",
    "length": f"{b['t'] / 60:.0f} min",
    "broadcasts": bcasts,
    "errors srv/cli": f"{s['errors']['total']}/{c['errors']['total']}",
    "missed": c["messages"]["missed"],
    f"RSS srv {steady_from}s→end": f"{a['srss']/1024:.1f}→{b['srss']/1024:.1f} MiB ({growth('srss'):+.2f} %)",
    f"RSS cli {steady_from}s→end": f"{a['crss']/1024:.1f}→{b['crss']/1024:.1f} MiB ({growth('crss'):+.2f} %)",
    "fds srv / cli (min–max)": f"{span('sfds')} / {span('cfds')}",
    "TCP inuse (min–max)": span("tcp"),
    f"bcast / p99, first {win} s": window(0, win),
    f"bcast / p99, last {win} s": window(end - win, end + 1),
    "CPU per broadcast": f"{cpu / in_steady:.2f} s (both sides)",
}
if face == "tui":
    f = [tuple(map(int, l.split())) for l in open(f"{out}/frames.log")]
    t0 = f[0][0]
    def fps(lo, hi):
        w = [x for x in f if lo <= x[0] - t0 <= hi]
        return (w[-1][1] - w[0][1]) / max(1, w[-1][0] - w[0][0])
    last = f[-1][0] - t0
    res["console fps, first / last window"] = f"{fps(0, win):.1f} / {fps(last - win, last):.1f}"
cols = list(res.keys())
print("| " + " | ".join(cols) + " |")
print("|" + "---|" * len(cols))
print("| " + " | ".join(str(res[k]) for k in cols) + " |")
PY
echo "whole run: ${TOTAL} s; reports and samples in $OUT"
[ "${APPEND:-1}" = 1 ] || exit 0
{
  echo
  echo "## bench/soak.sh, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "\`CLIENT=$CLIENT CONNS=$CONNS DURATION=$DURATION EVERY=$EVERY STEADY=$STEADY WINDOW=$WINDOW bench/soak.sh\` on $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $WORKERS workers a side; whole run ${TOTAL} s. RSS is each side's tree (parent and workers) from minute 5 to the end; the broadcast columns are the median delivery (first send → last receive) and the median per-broadcast p99, with the number of broadcasts in the window."
  echo
  cat "$OUT/table.md"
} >>BENCHMARKS.md
