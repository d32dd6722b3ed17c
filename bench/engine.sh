#!/usr/bin/env bash
# The engine benchmark: one server process and one client process on loopback, CONNS
# connections over IPS source addresses, BCASTS broadcasts. Prints a table and appends it to
# BENCHMARKS.md with the command. A benchmark, not a test: it asserts nothing.
#
#   bench/engine.sh                 # c1m server, then the Node `ws` reference server
#   CONNS=19000 IPS=4 BCASTS=5 SERVERS="c1m node" bench/engine.sh
#   # the client talking, as issue 10's figure asks (texts must hold no spaces):
#   URL_PATH='/ws?id={i}' CLIENT_ARGS='--send {"op":"sub","id":"{i}"} --heartbeat 5s={"op":"ping"} -H X-Conn:{i}' \
#     SERVERS=c1m bench/engine.sh
#
# How each figure is measured:
#   setup rate    the client report's ramp_rate: handshakes / (last − first handshake time)
#   user RSS/conn (VmRSS after the ramp − VmRSS before) / CONNS, per process. The client's
#                 "before" is the RSS of the same client run with --conns 0 (its fixed cost:
#                 runtime, shard threads, scratch buffers), sampled after 1 s.
#   kernel/conn   the Slab: delta in /proc/meminfo over the ramp / CONNS (both ends' sockets),
#                 and /proc/net/sockstat's TCP `inuse` sockets and `mem` pages after the ramp
#   broadcast     from the first send to the last client receive: the client's delivery_us
#                 (last receive − the payload's send timestamp, stamped before the first write);
#                 the first broadcast after the ramp, then the median and max of all
#   server loop   the server's own time from first to last write (c1m: broadcasts[].duration_us)
#   B/frame       the c1m server's bytes written per frame (broadcasts[].bytes / sent, median);
#                 inflated/in: the client's message bytes after inflating over the bytes it read
#   (the c1m server runs with --workers 0: one process, as the RSS figures measure)
#   latency       the client's whole-run HDR histogram over all broadcasts (µs)
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-19000}
IPS=${IPS:-4}
BCASTS=${BCASTS:-5}
PORT=${PORT:-18080}
SERVERS=${SERVERS:-"c1m node"}
GAP=${GAP:-1.5}
URL_PATH=${URL_PATH:-/}
TLS=${TLS:-0}   # 1: the c1m server with --tls-self-signed, the client over wss:// trusting it
COMPRESSION=${COMPRESSION:-off}  # shared|context: the client's --compression; the c1m server
                                 # then runs --compression shared, the Node one --deflate
PAD=${PAD:-0}   # the c1m server's --pad: broadcast payloads of this many bytes
MESSAGE=${MESSAGE:-}  # a file for the c1m server's --message (e.g. bench/tick.json, 1 KiB of
                      # market-data JSON) instead of --pad

cargo build --release -q
BIN=target/release/c1m
OUT=$(mktemp -d /tmp/c1m-bench.XXXXXX)
need=$((CONNS + 200))
if [ "$(ulimit -n)" -lt "$need" ]; then
  ulimit -n "$need" 2>/dev/null || { echo "bench: needs ulimit -n $need (have $(ulimit -n))"; exit 1; }
fi

rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
slab_kb() { awk '/^Slab:/{print $2}' /proc/meminfo; }
tcp_mem_pages() { awk '/^TCP:/{for(i=1;i<=NF;i++) if($i=="mem") print $(i+1)}' /proc/net/sockstat; }
tcp_inuse() { awk '/^TCP:/{for(i=1;i<=NF;i++) if($i=="inuse") print $(i+1)}' /proc/net/sockstat; }
tcp_tw() { awk '/^TCP:/{for(i=1;i<=NF;i++) if($i=="tw") print $(i+1)}' /proc/net/sockstat; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
established() { ss -Htn state established "( sport = :$PORT )" 2>/dev/null | wc -l; }

wait_for() { # wait_for SECONDS CMD...: poll until CMD succeeds
  local limit=$1; shift
  local end=$((SECONDS + limit))
  until "$@"; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.1
  done
}

# The client's fixed cost, measured once.
"$BIN" client --url "ws://127.0.0.1:1/" --conns 0 --duration 3s -q >/dev/null 2>&1 &
base_pid=$!
sleep 1.5
CLIENT_BASE_KB=$(rss_kb $base_pid)
wait $base_pid || true

run() { # run NAME
  local name=$1 spid
  local dir="$OUT/$name"
  mkdir -p "$dir"
  case $name in
    c1m)  # shellcheck disable=SC2046
          "$BIN" server --listen "127.0.0.1:$PORT" --workers 0 --every off --json "$dir/server.json" -q \
            $( [ -n "$MESSAGE" ] && echo "--message @$MESSAGE" || echo "--pad $PAD" ) \
            $( [ "$TLS" = 1 ] && echo --tls-self-signed ) \
            $( [ "$COMPRESSION" != off ] && echo --compression shared ) \
            >"$dir/server.out" 2>"$dir/server.err" & ;;
    node) # shellcheck disable=SC2046
          node tests/interop/ws_server.js "$PORT" $( [ "$COMPRESSION" != off ] && echo --deflate ) \
            >"$dir/server.err" 2>&1 & ;;
  esac
  spid=$!
  wait_for 10 grep -q "listening" "$dir/server.err" || { echo "bench: $name server did not start"; cat "$dir/server.err"; exit 1; }
  sleep 0.5
  local tw0 srss0 slab0 mem0
  tw0=$(tcp_tw); srss0=$(rss_kb $spid); slab0=$(slab_kb); mem0=$(tcp_mem_pages)

  local scheme=ws tls_args=""
  if [ "$TLS" = 1 ]; then scheme=wss; tls_args="--ca /tmp/c1m-$spid/cert.pem"; fi
  # shellcheck disable=SC2086 # CLIENT_ARGS and tls_args are lists of words
  "$BIN" client --url "$scheme://127.0.0.1:$PORT$URL_PATH" --conns "$CONNS" --ips "$IPS" --rate 0 ${CLIENT_ARGS:-} $tls_args \
    --compression "$COMPRESSION" \
    --duration 120s --json "$dir/client.json" >"$dir/client.out" 2>"$dir/client.err" &
  local cpid=$!
  local t0=$SECONDS
  # The client's status line says when the ramp is done; polling ss would steal the CPU the
  # ramp is measured on.
  wait_for 90 grep -q "conns $CONNS/$CONNS" "$dir/client.err" \
    || echo "bench: only $(established) of $CONNS connections established"
  sleep 1.5
  local srss1 crss1 slab1 mem1
  srss1=$(rss_kb $spid); crss1=$(rss_kb $cpid); slab1=$(slab_kb); mem1=$(tcp_mem_pages)
  local inuse1; inuse1=$(tcp_inuse)

  local scpu0 ccpu0
  scpu0=$(cpu_ticks $spid); ccpu0=$(cpu_ticks $cpid)
  for _ in $(seq "$BCASTS"); do
    kill -USR1 $spid
    sleep "$GAP"
  done
  local scpu1 ccpu1
  scpu1=$(cpu_ticks $spid); ccpu1=$(cpu_ticks $cpid)
  kill -TERM $cpid; wait $cpid || true
  kill -TERM $spid; wait $spid || true

  python3 - "$dir" "$name" "$CONNS" "$srss0" "$srss1" "$CLIENT_BASE_KB" "$crss1" "$slab0" "$slab1" \
    "$inuse1" "$mem1" "$tw0" "$((scpu1 - scpu0))" "$((ccpu1 - ccpu0))" "$BCASTS" <<'PY' >>"$OUT/rows"
import json, re, sys, statistics as st
d, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
srss0, srss1, cbase, crss1, slab0, slab1, inuse1, mem1, tw0, scpu, ccpu, bc = map(int, sys.argv[4:])
c = json.load(open(f"{d}/client.json"))
loops, frame = [], "-"
if name == "c1m":
    s = json.load(open(f"{d}/server.json"))
    loops = [b["duration_us"] / 1000 for b in s["broadcasts"]]
    sizes = [b["bytes"] / b["sent"] for b in s["broadcasts"] if b["sent"]]
    frame = round(st.median(sizes)) if sizes else "-"
else:
    for line in open(f"{d}/server.err"):
        m = re.search(r"sent to \d+ connections in ([\d.]+) ms", line)
        if m:
            loops.append(float(m.group(1)))
deliv = [b["delivery_us"] / 1000 for b in c["broadcasts"] if b.get("delivery_us") is not None]
lat = c["latency_us"]
est = c["connections"]["established"]
row = {
    "server": name,
    "conns": est,
    "errors": c["errors"]["total"],
    "missed": c["messages"]["missed"],
    "setup/s": round(c["connections"]["ramp_rate"] or 0),
    "srv KiB/conn": round((srss1 - srss0) / n, 2),
    "cli KiB/conn": round((crss1 - cbase) / n, 2),
    "slab KiB/conn": round((slab1 - slab0) / n, 2),
    "sockstat TCP inuse/mem": f"{inuse1}/{mem1}",
    "bcast ms first/med/max": f"{deliv[0]:.1f}/{st.median(deliv):.1f}/{max(deliv):.1f}" if deliv else "-",
    "srv loop ms (med)": f"{st.median(loops):.1f}" if loops else "-",
    "B/frame": frame,
    "compressed/windows": f"{c['connections']['compressed']}/{c['connections']['compression_windows']}",
    "inflated/in": round(c["bytes"]["inflated"] / c["bytes"]["in"], 1) if c["bytes"]["inflated"] else "-",
    "p50/p99/max ms": f"{lat['p50']/1000:.1f}/{lat['p99']/1000:.1f}/{lat['max']/1000:.1f}",
    "CPU s srv/cli": f"{scpu/100:.2f}/{ccpu/100:.2f}",
    "tw before": tw0,
}
print(json.dumps(row))
PY
  sleep 2
}

for s in $SERVERS; do run "$s"; done

python3 - "$OUT/rows" "$CONNS" "$IPS" "$BCASTS" <<'PY' | tee "$OUT/table.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cols = list(rows[0].keys())
print("| " + " | ".join(cols) + " |")
print("|" + "---|" * len(cols))
for r in rows:
    print("| " + " | ".join(str(r[c]) for c in cols) + " |")
PY

{
  echo
  echo "### engine: $CONNS connections, $IPS source addresses, $BCASTS broadcasts — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  talk=""
  [ "$URL_PATH" = / ] || talk="URL_PATH='$URL_PATH' "
  [ -z "${CLIENT_ARGS:-}" ] || talk="${talk}CLIENT_ARGS='$CLIENT_ARGS' "
  [ "$TLS" = 1 ] && talk="${talk}TLS=1 "
  [ "$COMPRESSION" = off ] || talk="${talk}COMPRESSION=$COMPRESSION "
  [ "$PAD" = 0 ] || talk="${talk}PAD=$PAD "
  [ -z "$MESSAGE" ] || talk="${talk}MESSAGE=$MESSAGE "
  echo "\`${talk}CONNS=$CONNS IPS=$IPS BCASTS=$BCASTS SERVERS=\"$SERVERS\" bench/engine.sh\` on $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), git $(git rev-parse --short HEAD)"
  echo
  cat "$OUT/table.md"
} >>BENCHMARKS.md
echo "bench: appended to BENCHMARKS.md; raw files in $OUT"
