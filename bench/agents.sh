#!/usr/bin/env bash
# A million connections through agents, on one machine: network namespaces stand for the
# machines (a server host, AGENTS agent hosts and a coordinator host, veth pairs on one bridge,
# 10.213.0.0/16), made here and removed at the end. The server (c1m's, growing over worker
# processes) listens on 10.213.0.10:8080; agent k has sixteen addresses 10.213.k.1-16 and holds
# CONNS/AGENTS connections over worker processes of its own; the coordinator splits the target
# and merges. Prints a table with the coordinator's own cost and appends it to BENCHMARKS.md.
# A benchmark, not a test: it asserts nothing. Needs root (namespaces, sysctls).
#
#   bench/agents.sh                       # 1,000,000 through 4 agents, 3 broadcasts
#   CONNS=200000 AGENTS=2 bench/agents.sh # smaller
#
# Figures: setup/s is the coordinator report's ramp_rate; broadcast is first send -> last
# receive (the report's delivery_us: first / median / max); p50/p99 the merged histogram; the
# coordinator's CPU is user+system seconds of its process over the whole run, its memory its
# peak VmHWM; per agent-second = CPU / (agents x run seconds).
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-1000000}
AGENTS=${AGENTS:-4}
BCASTS=${BCASTS:-3}
HOLD=${HOLD:-10}
[ "$(id -u)" = 0 ] || { echo "bench: needs root (network namespaces and sysctls)"; exit 1; }
cargo build --release -q
BIN=$PWD/target/release/c1m
START=$SECONDS
"$BIN" doctor --target "$CONNS" --side local --apply | grep -E "^(changed|could not|Nothing)" || true
# A namespace made from now on gets a TCP connection hash this large (the host's is sized at
# boot, and 2M sockets in a small one crawl).
sysctl -q -w net.ipv4.tcp_child_ehash_entries=$((CONNS > 2097152 ? 2097152 : CONNS))
P=c1mb$$
# Agents off loopback need a token; the coordinator presents the same one.
export C1M_AGENT_TOKEN=bench-$$
OUT=$(mktemp -d /tmp/c1m-agents.XXXXXX)
NS=()
cleanup() {
  pkill -INT -f "^$BIN (client|agent|server)" 2>/dev/null || true
  sleep 2
  pkill -KILL -f "^$BIN" 2>/dev/null || true
  for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
}
trap cleanup EXIT
ns() { ip netns add "$1"; NS+=("$1"); ip -n "$1" link set lo up; }
ns "${P}sw"
ip -n "${P}sw" link add br0 type bridge
ip -n "${P}sw" link set br0 up
host() { # host NAME INDEX ADDR...
  local name=$1 k=$2; shift 2
  ns "$P$name"
  ip link add "v$k" netns "$P$name" type veth peer name "p$k" netns "${P}sw"
  for a in "$@"; do ip -n "$P$name" addr add "$a/16" dev "v$k"; done
  ip -n "$P$name" link set "v$k" up
  ip -n "${P}sw" link set "p$k" master br0
  ip -n "${P}sw" link set "p$k" up
  ip netns exec "$P$name" sysctl -q -w net.ipv4.ip_local_port_range="1024 65535" \
    net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535
}
host srv 0 10.213.0.10
host co 99 10.213.0.20
for k in $(seq "$AGENTS"); do host "a$k" "$k" $(for i in $(seq 16); do echo "10.213.$k.$i"; done); done
run_in() { local h=$1; shift; exec ip netns exec "$P$h" "$BIN" "$@"; }  # $! is then c1m's pid

run_in srv server --listen 10.213.0.10:8080 --every off -q --json "$OUT/server.json" \
  >"$OUT/server.out" 2>"$OUT/server.err" &
SPID=$!
for k in $(seq "$AGENTS"); do
  run_in "a$k" agent --listen "10.213.$k.1:7070" --once \
    --source-ips "$(seq -s, -f "10.213.$k.%g" 1 16)" \
    2>"$OUT/agent$k.err" &
done
sleep 2
AGENT_LIST=$(for k in $(seq "$AGENTS"); do printf '10.213.%s.1:7070,' "$k"; done)
T0=$SECONDS
run_in co client --url ws://10.213.0.10:8080/ --agents "${AGENT_LIST%,}" --conns "$CONNS" \
  --rate 0 --duration 600s --json "$OUT/client.json" --html "$OUT/client.html" \
  >"$OUT/client.out" 2>"$OUT/client.err" &
CPID=$!
sleep 1
COPID=$CPID
# The coordinator's resident memory each half second, with the phase it is in, to say where
# its peak comes from.
echo ramp >"$OUT/phase"
( while kill -0 $COPID 2>/dev/null; do
    printf '%s %s %s\n' "$SECONDS" "$(cat "$OUT/phase")" \
      "$(awk '/^VmRSS/{print $2}' "/proc/$COPID/status" 2>/dev/null)" >>"$OUT/co_rss.txt"
    sleep 0.5
  done ) &
until grep -q "conns $CONNS/$CONNS " "$OUT/client.err"; do
  kill -0 $CPID 2>/dev/null || { echo "bench: the coordinator ended:"; tail -5 "$OUT/client.err"; exit 1; }
  [ $((SECONDS - T0)) -lt 300 ] || { echo "bench: the ramp did not finish in 300 s"; tail -3 "$OUT/client.err"; exit 1; }
  sleep 0.5
done
RAMP=$((SECONDS - T0))
echo hold >"$OUT/phase"
sleep 2
for b in $(seq "$BCASTS"); do
  echo "broadcast" >"$OUT/phase"
  kill -USR1 $SPID
  until [ "$(grep -c '^broadcast seq=' "$OUT/server.err" || true)" -ge "$b" ]; do sleep 0.2; done
  sleep $((CONNS / 100000 + 2))
done
echo hold >"$OUT/phase"
sleep "$HOLD"
CO_CPU=$(awk '{print ($14+$15)/100}' "/proc/$COPID/stat")
CO_HWM=$(awk '/^VmHWM/{print $2}' "/proc/$COPID/status")
WALL=$((SECONDS - T0))
kill -INT $CPID; wait $CPID || true
kill -INT $SPID; wait $SPID || true
python3 - "$OUT" "$AGENTS" "$CO_CPU" "$CO_HWM" "$WALL" "$RAMP" <<'PY' | tee "$OUT/table.md"
import json, sys, statistics as st
out, agents, cpu, hwm, wall, ramp = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
c = json.load(open(f"{out}/client.json"))
deliv = [b["delivery_us"] / 1e6 for b in c["broadcasts"] if b.get("delivery_us") and b["received"] >= b["open"]]
rows = [w for w in c["workers"]]
lat = c["latency_us"]
deltas = sum(w["deltas"] for w in rows)
agents_cpu = sum(w["cpu_s"] or 0 for w in rows)
peak = {}
for line in open(f"{out}/co_rss.txt"):
    parts = line.split()
    if len(parts) == 3:
        peak[parts[1]] = max(peak.get(parts[1], 0), int(parts[2]))
print("| connections | agents | errors | missed | setup/s | bcast s first/med/max | p50/p99 s | coordinator CPU s (per agent-second) | coordinator peak RSS | clock offsets ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
offs = "/".join(f"{(w['agent']['clock_offset_us'] or 0)/1e3:+.2f}" for w in rows)
print(f"| {c['connections']['peak']:,} | {agents} | {c['errors']['total']} | {c['messages']['missed']} | "
      f"{round(c['connections']['ramp_rate'] or 0):,} | "
      + (f"{deliv[0]:.2f}/{st.median(deliv):.2f}/{max(deliv):.2f}" if deliv else "-")
      + f" | {lat['p50']/1e6:.2f}/{lat['p99']/1e6:.2f} | {cpu:.2f} ({cpu/(agents*wall)*1000:.1f} ms) | "
      f"{hwm/1024:.0f} MiB | {offs} |")
print()
print(f"Coordinator: {deltas:,} deltas from the agents, {cpu / max(deltas, 1) * 1e6:.0f} µs of its CPU each; "
      f"the agents' own CPU {agents_cpu:.1f} s ({cpu / max(agents_cpu, 1e-9) * 100:.1f} % of it on the coordinator); "
      "its peak RSS by phase: " + ", ".join(f"{k} {v / 1024:.0f} MiB" for k, v in peak.items()) + ".")
PY
TOTAL=$((SECONDS - START))
{
  echo
  echo "## bench/agents.sh, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "\`CONNS=$CONNS AGENTS=$AGENTS BCASTS=$BCASTS HOLD=$HOLD bench/agents.sh\` on $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo): network namespaces as hosts (server, $AGENTS agents with 16 addresses each, coordinator) on one bridge; coordinator run ${WALL} s (ramp ${RAMP} s), whole bench ${TOTAL} s."
  echo
  cat "$OUT/table.md"
} >>BENCHMARKS.md
echo "bench: reports in $OUT"
