#!/usr/bin/env python3
"""Judges a soak's samples (bench/soak.sh writes them; this can judge an old run's again):
prints one Markdown table row.

    python3 bench/soak_judge.py OUT DURATION CLIENT STEADY WINDOW EVERY

RSS growth compares the median of the first minute from STEADY with the median of the last
minute in which the client still held all its connections: one sample each way moves ±2 % with
the allocators' breathing at 100,000 connections, which is twice the goal. The least-squares
trend over the same span is given in % an hour. Samples files with the parents' own RSS
(columns spar, cpar) also get the parent process alone: the run layer, and the console's.
"""
import json
import statistics as st
import sys

out, duration, face = sys.argv[1], int(sys.argv[2]), sys.argv[3]
steady_from, win, every = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6].rstrip("s"))
lines = [l.split() for l in open(f"{out}/samples")]
head, rows = lines[0], [r for r in lines[1:] if len(r) == len(lines[0])]
S = [dict(zip(head, map(int, r))) for r in rows]
c = json.load(open(f"{out}/client.json"))
s = json.load(open(f"{out}/server.json"))
full = max(x["cfds"] for x in S)
# From STEADY on, while the client held what it opened (its own end is not the soak).
held = [x for x in S if x["t"] >= steady_from and x["cfds"] >= full - 50]
a, b = held[0], held[-1]
first = [x for x in held if x["t"] < a["t"] + 60]
last = [x for x in held if x["t"] > b["t"] - 60]


def rss(k):
    m0, m1 = st.median(x[k] for x in first), st.median(x[k] for x in last)
    tm, vm = st.mean(x["t"] for x in held), st.mean(x[k] for x in held)
    num = sum((x["t"] - tm) * (x[k] - vm) for x in held)
    slope = num / sum((x["t"] - tm) ** 2 for x in held)
    return (f"{m0 / 1024:.1f}→{m1 / 1024:.1f} MiB ({(m1 - m0) / m0 * 100:+.2f} %; "
            f"trend {slope * 3600 / vm * 100:+.2f} %/h)")


span = lambda k: f"{min(x[k] for x in held):,}–{max(x[k] for x in held):,}"
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
    "length": f"{duration / 60:.0f} min",
    "broadcasts": bcasts,
    "errors srv/cli": f"{s['errors']['total']}/{c['errors']['total']}",
    "missed": c["messages"]["missed"],
    f"RSS srv, minute from {steady_from} s → last": rss("srss"),
    f"RSS cli, minute from {steady_from} s → last": rss("crss"),
}
if "cpar" in head:
    res["of which the client's parent"] = rss("cpar")
res |= {
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

    last_t = f[-1][0] - t0
    res["console fps, first / last window"] = f"{fps(0, win):.1f} / {fps(last_t - win, last_t):.1f}"
cols = list(res.keys())
print("| " + " | ".join(cols) + " |")
print("|" + "---|" * len(cols))
print("| " + " | ".join(str(res[k]) for k in cols) + " |")
