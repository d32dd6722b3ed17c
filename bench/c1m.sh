#!/usr/bin/env bash
# C1M on one machine: a c1m server and a c1m client co-located on loopback, ramped to each
# step in turn (fresh processes per step), holding both ends of every connection. Each side
# runs as worker processes when a step exceeds what one process may hold (the hard
# RLIMIT_NOFILE less 100); on a host with a raised limit each side is one process. Prints a
# table and appends it, with the command and the run's length, to BENCHMARKS.md. A benchmark,
# not a test: it asserts nothing, but says which limit stopped a step it could not reach.
#
#   bench/c1m.sh                                  # 100K, 250K, 500K, 1M; holds the last 60 s
#   STEPS="100000 250000" HOLD=10 bench/c1m.sh    # a shorter run
#   GROWS=1 STEPS=1000000 bench/c1m.sh            # the server without --workers: it grows
#   TLS=1 bench/c1m.sh                            # over TLS: the server --tls-self-signed, the
#                                                 # client wss:// trusting it (resuming sessions)
#   SERVER_ARGS=--io-uring bench/c1m.sh           # more flags for the server (CLIENT_ARGS: the
#                                                 # client's), named in the appended section
#
# As root it first runs `c1m doctor --apply` for the largest step, which raises the sysctls
# that step needs for this boot and prints each change (APPLY=0 skips it); otherwise the
# client's start-up check stops a step the limits cannot hold and names the limit. When this
# network namespace's TCP connection hash (sized at boot) has fewer than half as many buckets
# as the sockets, the run moves into a new network namespace whose hash doctor has sized
# (net.ipv4.tcp_child_ehash_entries): loopback only, so nothing else changes.
#
# How each figure is measured (per step; "tree" = the parent and its worker processes):
#   setup/s       the client report's ramp_rate: handshakes / (last − first handshake time)
#   KiB/conn      the tree's total RSS after the ramp / connections: worker baselines included
#   slab/socket   the rise of Slab in /proc/meminfo over the ramp / (2 × connections)
#   sockstat      /proc/net/sockstat TCP inuse and mem (pages) after the ramp
#   CPU           CPU seconds (user + system) of each tree: over the ramp, and over the
#                 broadcasts (all of them)
#   broadcast     first send → last receive in any worker: the client's delivery_us (last
#                 receive − the payload's timestamp, stamped before the first write), first
#                 broadcast / median / max
#   latency       the client's merged HDR histogram over all broadcasts: p50 / p99 / max
#   busy/wait %   over each broadcast's window (the payload's stamp → the last receive), from
#                 bench/timeline.py's samples every 0.1 s: both trees' run time / (wall time ×
#                 cores), and the share of the time some task waited for a core (PSI); median
#                 over the broadcasts (per-broadcast figures in the step's timeline.json)
#   µs/msg        each tree's run time in the window / messages delivered in it (median)
#   ctxt/msg      the machine's context switches in the window / messages delivered
#
# Each side also writes its HTML report; the last step's client page is kept in docs/bench/
# (the page, and a picture of it when Chromium is here) and linked from the appended section.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-"100000 250000 500000 1000000"}
BCASTS=${BCASTS:-3}
HOLD=${HOLD:-60}
PORT=${PORT:-19090}
BIN=target/release/c1m
TLS=${TLS:-0}
read -ra SERVER_EXTRA <<<"${SERVER_ARGS:-}"
read -ra CLIENT_EXTRA <<<"${CLIENT_ARGS:-}"
START=$SECONDS

cargo build --release -q
if [ "$(id -u)" = 0 ] && [ "${APPLY:-1}" = 1 ]; then
  "$BIN" doctor --target "${STEPS##* }" --side local --apply | grep -E "^(changed|could not|Nothing)" || true
  buckets=$(tr -d -- '- \n' </proc/sys/net/ipv4/tcp_ehash_entries 2>/dev/null || true)
  sockets=$((2 * ${STEPS##* }))
  if [ -z "${C1M_BENCH_NETNS:-}" ] && [ -n "$buckets" ] && [ $((buckets * 2)) -lt $sockets ] \
     && command -v unshare >/dev/null && command -v ip >/dev/null; then
    echo "bench: the TCP connection hash has $buckets buckets for $sockets sockets; running in a new network namespace with $(cat /proc/sys/net/ipv4/tcp_child_ehash_entries)"
    exec env C1M_BENCH_NETNS=1 unshare -n sh -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
  fi
fi
NETNS=""
[ -n "${C1M_BENCH_NETNS:-}" ] && NETNS=", in a new network namespace (tcp_ehash_entries $(tr -d -- '- \n' </proc/sys/net/ipv4/tcp_ehash_entries))"
OUT=$(mktemp -d /tmp/c1m-c1m.XXXXXX)
HARD=$(ulimit -Hn)
[ "$HARD" = unlimited ] && HARD=1048576
CAP=$((HARD - 100))
ulimit -n "$HARD" 2>/dev/null || true

. bench/lib.sh
slab_kb() { awk '/^Slab:/{print $2}' /proc/meminfo; }
sockstat() { awk '/^TCP:/{for(i=1;i<=NF;i++){if($i=="inuse")u=$(i+1); if($i=="mem")m=$(i+1)}} END{print u"/"m}' /proc/net/sockstat; }
broadcasts_done() { [ "$(grep -c "^broadcast seq=" "$1" 2>/dev/null || true)" -ge "$2" ]; }
tcp_inuse_below() { [ "$(awk '/^TCP:/{print $3}' /proc/net/sockstat)" -lt "$1" ]; }

step() { # step CONNS
  local n=$1 dir="$OUT/$1"
  mkdir -p "$dir"
  local workers=()
  # SO_REUSEPORT spreads by a hash of the 4-tuple: at 51 workers the fullest gets ~1.6 % over the
  # mean, so exactly ceil(n/CAP) workers (1.5 % spare at 1M) left 2 of 6 runs short of 1M with
  # fd_limit in the fullest workers. 3 % spare.
  [ "$n" -gt "$CAP" ] && [ "${GROWS:-0}" != 1 ] && workers=(--workers $(((n * 103 / 100 + CAP - 1) / CAP)))
  local slab0; slab0=$(slab_kb)
  local tls=() url="ws://127.0.0.1:$PORT/" ramp_limit=$((n / 5000 + 60))
  [ "$TLS" = 1 ] && tls=(--tls-self-signed)
  "$BIN" server --listen "127.0.0.1:$PORT" --every off -q "${workers[@]}" "${tls[@]}" "${SERVER_EXTRA[@]}" \
    --json "$dir/server.json" --html "$dir/server.html" >"$dir/server.out" 2>"$dir/server.err" &
  local spid=$!
  wait_for 30 grep -q "listening" "$dir/server.err" || { echo "bench: the server did not start"; cat "$dir/server.err"; exit 1; }
  if [ "$TLS" = 1 ]; then
    # The server's banner names the certificate it made; full handshakes run near 3,000/s.
    tls=(--ca "$(grep -o -- '--ca [^ )]*' "$dir/server.err" | head -1 | cut -d' ' -f2)")
    url="wss://127.0.0.1:$PORT/" ramp_limit=$((n / 1000 + 60))
  fi
  local t0=$SECONDS
  "$BIN" client --url "$url" "${tls[@]}" "${CLIENT_EXTRA[@]}" --conns "$n" --rate 0 --duration "$((ramp_limit + HOLD + 30))s" \
    --json "$dir/client.json" --html "$dir/client.html" >"$dir/client.out" 2>"$dir/client.err" &
  local cpid=$!
  sleep 0.5
  local scpu0 ccpu0; scpu0=$(tree_sum $spid cpu); ccpu0=$(tree_sum $cpid cpu)
  local reached=yes
  ramped() { grep -q "conns $n/$n " "$dir/client.err" || ! kill -0 $cpid 2>/dev/null; }
  wait_for "$ramp_limit" ramped || true
  grep -q "conns $n/$n " "$dir/client.err" || reached=no
  local ramp_wall=$((SECONDS - t0))
  local scpu1 ccpu1; scpu1=$(tree_sum $spid cpu); ccpu1=$(tree_sum $cpid cpu)
  sleep 2
  local srss crss slab1 sock
  srss=$(tree_sum $spid rss); crss=$(tree_sum $cpid rss); slab1=$(slab_kb); sock=$(sockstat)
  local held_from=$SECONDS
  # At normal priority: run real-time (chrt -f 5) it took 6.8 s of CPU in 37 s at 1M, 18 % of
  # a core, and slowed the broadcast it measured (2026-11-30); its own CPU is printed below.
  python3 bench/timeline.py sample "$dir/timeline" $spid $cpid &
  local tpid=$!
  # Its first sample before the first broadcast: started beside a 1M broadcast, the sampler
  # wrote its first line 7 s later, after the broadcast had ended (2026-11-30, perf).
  wait_for 30 test -s "$dir/timeline" || true
  for k in $(seq "$BCASTS"); do
    kill -USR1 $spid
    wait_for 60 broadcasts_done "$dir/server.err" "$k" || true
    sleep $((n / 250000 + 1))
  done
  local scpu2 ccpu2; scpu2=$(tree_sum $spid cpu); ccpu2=$(tree_sum $cpid cpu)
  awk -v hz="$(getconf CLK_TCK)" -v s=$((SECONDS - held_from)) \
    '{printf "bench: step '"$n"': the sampler used %.2f s of CPU in %d s\n", ($14 + $15) / hz, s}' \
    /proc/$tpid/stat 2>/dev/null || true
  kill $tpid 2>/dev/null; wait $tpid 2>/dev/null || true
  # The last step holds the connections HOLD seconds from the end of the ramp.
  if [ "$n" = "${STEPS##* }" ]; then
    local left=$((HOLD - (SECONDS - held_from)))
    [ $left -gt 0 ] && sleep $left
  fi
  local held=$((SECONDS - held_from))
  kill -TERM $cpid; wait $cpid || true
  kill -TERM $spid; wait $spid || true
  if [ $reached = no ]; then
    echo "bench: step $n: the ramp did not reach $n; the client said:"
    grep -vE "^\[" "$dir/client.err" | head -12 || true
    "$BIN" doctor --target "$n" --side local | grep -E "FAIL|allow about" || true
    [ -s "$dir/client.json" ] || { echo "bench: stopping at step $n"; return 1; }
  fi
  python3 - "$dir" "$n" "$srss" "$crss" "$slab0" "$slab1" "$sock" "$((scpu1 - scpu0))" "$((ccpu1 - ccpu0))" \
    "$((scpu2 - scpu1))" "$((ccpu2 - ccpu1))" "$held" "$ramp_wall" <<'PY' >>"$OUT/rows"
import json, subprocess, sys, statistics as st
d, n = sys.argv[1], int(sys.argv[2])
srss, crss, slab0, slab1 = map(int, sys.argv[3:7])
sock = sys.argv[7]
sramp, cramp, sb, cb, held, ramp_wall = map(int, sys.argv[8:14])
c = json.load(open(f"{d}/client.json"))
s = json.load(open(f"{d}/server.json"))
deliv = [b["delivery_us"] / 1000 for b in c["broadcasts"] if b.get("delivery_us") is not None]
lat = c["latency_us"]
est = c["connections"]["peak"]
fmt_s = lambda ms: f"{ms/1000:.2f}"
judged = subprocess.run(["python3", "bench/timeline.py", "judge", f"{d}/timeline", f"{d}/client.json"],
                        capture_output=True, text=True).stdout
open(f"{d}/timeline.json", "w").write(judged)
tl = [json.loads(l) for l in judged.splitlines() if '"seq"' in l]
med = lambda k: st.median(t[k] for t in tl)
print(json.dumps({
    "step": f"{n:,}",
    "held": f"{est:,}",
    "workers srv/cli": f"{len(s['workers']) or 1}/{len(c['workers']) or 1}",
    "errors srv/cli": f"{s['errors']['total']}/{c['errors']['total']}",
    "missed": c["messages"]["missed"],
    "setup/s": f"{round(c['connections']['ramp_rate'] or 0):,}",
    "TLS resumed": f"{c['connections']['tls_resumed']:,}" if c["connections"]["tls_handshakes"] else "-",
    "KiB/conn srv/cli": f"{srss / est:.2f}/{crss / est:.2f}" if est else "-",
    "slab KiB/socket": f"{(slab1 - slab0) / (2 * est):.2f}" if est else "-",
    "sockstat inuse/mem": sock,
    "CPU s ramp srv/cli": f"{sramp/100:.1f}/{cramp/100:.1f}",
    "CPU s bcasts srv/cli": f"{sb/100:.1f}/{cb/100:.1f}",
    "busy/wait %": f"{med('busy_pct'):.0f}/{med('waiting_pct'):.0f}" if tl else "-",
    "µs/msg srv/cli": f"{med('srv_us_per_msg'):.1f}/{med('cli_us_per_msg'):.1f}" if tl else "-",
    "ctxt/msg": f"{med('ctxt_per_msg'):.2f}" if tl else "-",
    "bcast s first/med/max": f"{fmt_s(deliv[0])}/{fmt_s(st.median(deliv))}/{fmt_s(max(deliv))}" if deliv else "-",
    "p50/p99/max s": f"{lat['p50']/1e6:.2f}/{lat['p99']/1e6:.2f}/{lat['max']/1e6:.2f}",
    "held s": held,
}))
PY
  # Let the previous step's sockets go before the next ramp.
  wait_for 120 tcp_inuse_below 20000 || true
  sleep 2
}

for n in $STEPS; do step "$n" || break; done
TOTAL=$((SECONDS - START))

python3 - "$OUT/rows" <<'PY' | tee "$OUT/table.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cols = list(rows[0].keys())
print("| " + " | ".join(cols) + " |")
print("|" + "---|" * len(cols))
for r in rows:
    print("| " + " | ".join(str(r[c]) for c in cols) + " |")
PY
echo "whole run: ${TOTAL} s; per-step reports in $OUT"
# The last step's client page, kept beside BENCHMARKS.md with a picture of it: the full page
# through playwright-core when tests/interop has it, else Chromium's own screenshot.
LAST=$(tail -n 1 "$OUT/rows" | python3 -c 'import json,sys; print(json.load(sys.stdin)["step"].replace(",", ""))')
STAMP=$(date -u +%Y%m%dT%H%MZ)
PAGE=docs/bench/c1m-$STAMP-$LAST-client
mkdir -p docs/bench
cp "$OUT/$LAST/client.html" "$PAGE.html"
if [ -d tests/interop/node_modules/playwright-core ] && command -v chromium >/dev/null; then
  (cd tests/interop && node check_page.js "../../$PAGE.html" "../../$PAGE.png" >/dev/null) || true
elif command -v chromium >/dev/null; then
  chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1000,6000 \
    --user-data-dir="$OUT/profile" --screenshot="$PAGE.png" "file://$PWD/$PAGE.html" >/dev/null 2>&1 || true
fi
{
  echo
  echo "## bench/c1m.sh, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "\`TLS=$TLS GROWS=${GROWS:-0} STEPS=\"$STEPS\" BCASTS=$BCASTS HOLD=$HOLD SERVER_ARGS=\"${SERVER_ARGS:-}\" CLIENT_ARGS=\"${CLIENT_ARGS:-}\" bench/c1m.sh\` on $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), hard RLIMIT_NOFILE $HARD${NETNS}; whole run ${TOTAL} s."
  echo
  cat "$OUT/table.md"
  echo
  echo "Where the cores went in each broadcast of the ${LAST} step (bench/timeline.py; the workers' own timelines are in the step's timeline.json):"
  echo
  python3 - "$OUT/$LAST/timeline.json" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| seq | bcast s | busy % (c1m/all) | some task waiting % | tasks waiting | µs/msg srv/cli | ctxt/msg |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    if "seq" in r:
        print(f"| {r['seq']} | {r['delivery_s']:.2f} | {r['busy_pct']:.0f}/{r['busy_pct_machine']:.0f} | {r['waiting_pct']:.0f} | {r['runq_tasks']:.1f} | {r['srv_us_per_msg']:.2f}/{r['cli_us_per_msg']:.2f} | {r['ctxt_per_msg']:.3f} |")
for r in rows:
    if "idle_cpu_per_s" in r:
        i = r["idle_cpu_per_s"]
        print(f"\nBetween broadcasts ({i['over_s']:.0f} s sampled) the trees ran {i['srv']:.3f} (server) and {i['cli']:.3f} (client) CPU-seconds a second.")
PY
  echo
  echo "The ${LAST} step's client report: [$PAGE.html]($PAGE.html)."
  if [ -f "$PAGE.png" ]; then
    echo
    echo "![The ${LAST} step's client report]($PAGE.png)"
  fi
} >>BENCHMARKS.md
