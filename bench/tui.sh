#!/usr/bin/env bash
# What the console costs: broadcast time at CONNS connections with the TUI attached, against
# headless, for each face of c1m. The TUI runs in a tmux pane as a person would run it.
# A benchmark, not a test: it prints a table, appends it to BENCHMARKS.md, asserts nothing.
#
#   bench/tui.sh                      # CONNS=19000 IPS=4 BCASTS=5
#   ORDER="client:tui client:headless" bench/tui.sh   # other runs, or another order
#
# Rows: for each face (server, client), that face runs headless and then as the TUI, in a tmux
# pane either way; the other side runs headless from this shell and does the measuring
# (the client) or the broadcasting (the server, on SIGUSR1; a server face broadcasts on `b`).
# Figures: broadcast time = the client's delivery_us (first send → last receive), median and max
# over BCASTS broadcasts; the TUI's frames per second as it reports them on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${CONNS:-19000}
IPS=${IPS:-4}
BCASTS=${BCASTS:-5}
PORT=${PORT:-18180}
GAP=${GAP:-1.5}
cargo build --release -q
BIN=$PWD/target/release/c1m
OUT=$(mktemp -d /tmp/c1m-tui-bench.XXXXXX)
SOCK=c1m-bench-$$
tm() { tmux -L "$SOCK" -f /dev/null "$@"; }
trap 'tm kill-server 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true' EXIT

wait_for() { local end=$((SECONDS + $1)); shift; until "$@"; do [ $SECONDS -lt $end ] || return 1; sleep 0.2; done; }

# run FACE KIND: FACE (server|client) runs as KIND (headless|tui) in a tmux pane; the other
# side runs headless from this shell. A pane is its own session, and with sched_autogroup the
# scheduler treats it differently from a process started here (measured: 20-40 % on the
# broadcast time), so the headless baseline runs in a pane too.
run() {
  local face=$1 kind=$2 name="$1 $2" dir="$OUT/$1-$2" spid="" cpid=""
  mkdir -p "$dir"
  local client_args="--url ws://127.0.0.1:$PORT/ --conns $CONNS --ips $IPS --rate 0 --json $dir/client.json"
  if [ "$face" = server ]; then
    if [ "$kind" = tui ]; then
      tm new-session -d -s srv -x 120 -y 40 "$BIN tui --mode server --listen 127.0.0.1:$PORT --every off 2>$dir/tui.err"
    else
      tm new-session -d -s srv -x 120 -y 40 "$BIN server --listen 127.0.0.1:$PORT --every off 2>$dir/server.err"
    fi
    sleep 1
    "$BIN" client $client_args --duration 300s >/dev/null 2>"$dir/client.err" & cpid=$!
    wait_for 60 grep -q "conns $CONNS/$CONNS" "$dir/client.err"
  else
    "$BIN" server --listen "127.0.0.1:$PORT" --every off -q >/dev/null 2>"$dir/server.err" & spid=$!
    wait_for 10 grep -q listening "$dir/server.err"
    if [ "$kind" = tui ]; then
      tm new-session -d -s cli -x 120 -y 40 "$BIN tui --mode client $client_args 2>$dir/tui.err"
      wait_for 60 bash -c "tmux -L $SOCK capture-pane -p -t cli | grep -Eq 'open +${CONNS:0:2},${CONNS:2}'"
    else
      tm new-session -d -s cli -x 120 -y 40 "$BIN client $client_args --duration 300s 2>$dir/client.err"
      wait_for 60 grep -q "conns $CONNS/$CONNS" "$dir/client.err"
    fi
  fi
  sleep 1
  for _ in $(seq "$BCASTS"); do
    if [ -n "$spid" ]; then kill -USR1 "$spid"; elif [ "$kind" = tui ]; then tm send-keys -t srv b; else tm send-keys -t srv b Enter; fi
    sleep "$GAP"
  done
  if [ -n "$cpid" ]; then kill -TERM "$cpid"; wait "$cpid" || true
  elif [ "$kind" = tui ]; then tm send-keys -t cli q; wait_for 20 test -s "$dir/client.json"
  else tm send-keys -t cli C-c; wait_for 20 test -s "$dir/client.json"; fi
  if [ -n "$spid" ]; then kill -TERM "$spid"; wait "$spid" || true
  elif [ "$kind" = tui ]; then tm send-keys -t srv q; sleep 1
  else tm send-keys -t srv C-c; sleep 1; fi
  tm kill-server 2>/dev/null || true
  python3 - "$dir" "$name" <<'PY' >>"$OUT/rows"
import json, re, statistics as st, sys
d, name = sys.argv[1], sys.argv[2]
c = json.load(open(f"{d}/client.json"))
deliv = [b["delivery_us"] / 1000 for b in c["broadcasts"] if b.get("delivery_us") is not None]
fps = "-"
try:
    m = re.search(r"\(([\d.]+) fps\)", open(f"{d}/tui.err").read())
    fps = m.group(1) if m else "-"
except FileNotFoundError:
    pass
print(json.dumps({"run": name, "conns": c["connections"]["established"], "broadcasts": len(deliv),
  "missed": c["messages"]["missed"], "bcast ms med": round(st.median(deliv), 1) if deliv else "-",
  "bcast ms max": round(max(deliv), 1) if deliv else "-", "tui fps": fps}))
PY
  sleep 2
}

for r in ${ORDER:-"server:headless server:tui client:headless client:tui"}; do
  run "${r%%:*}" "${r##*:}"
done

python3 - "$OUT/rows" <<'PY' | tee "$OUT/table.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cols = list(rows[0].keys())
print("| " + " | ".join(cols) + " |")
print("|" + "---|" * len(cols))
for r in rows:
    print("| " + " | ".join(str(r[c]) for c in cols) + " |")
base = {r["run"].split()[0]: r["bcast ms med"] for r in rows if r["run"].endswith("headless")}
for r in rows:
    if r["run"].endswith("tui") and isinstance(r["bcast ms med"], float):
        b = base[r["run"].split()[0]]
        print(f"\n{r['run']}: median broadcast {r['bcast ms med']} ms vs {b} ms headless ({(r['bcast ms med'] / b - 1) * 100:+.1f} %)")
PY
{
  echo
  echo "### console cost: $CONNS connections, $IPS source addresses, $BCASTS broadcasts — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "\`CONNS=$CONNS IPS=$IPS BCASTS=$BCASTS bench/tui.sh\` on $(nproc) cores, git $(git rev-parse --short HEAD)"
  echo
  cat "$OUT/table.md"
} >>BENCHMARKS.md
echo "bench: appended to BENCHMARKS.md; raw files in $OUT"
