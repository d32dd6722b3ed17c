#!/usr/bin/env python3
"""Where the cores go during a broadcast: a sampler and its judge, for bench/c1m.sh.

    timeline.py sample OUT SERVER_PID CLIENT_PID [INTERVAL_S]   # until both trees are gone
    timeline.py judge OUT CLIENT_JSON                            # one JSON object per broadcast

`sample` writes one line per INTERVAL (0.1 s): the wall clock in µs (the clock c1m stamps its
reports with); the machine's busy and total jiffies and context switches (/proc/stat) and the
µs in which some task waited for a CPU (/proc/pressure/cpu); and for each tree ("tree" = a c1m
parent and its worker processes) the run and run-queue wait ns summed over all its threads
(/proc/PID/task/TID/schedstat). Its own cost is reported by `judge` as part of the machine's
busy time, not the trees'.

`judge` takes each broadcast's window from the client's report (the payload's stamp → the
last receive) and says, over the samples inside it: how busy the cores were with c1m (the
trees' run time over wall time × CPUs) and at all (jiffies), the share of the time some task
waited for a core and how many waited on average, context switches and each tree's CPU per
delivered message; and the trees' CPU rate outside the broadcasts (what a hundred processes
cost while nothing is sent), which the per-message figures include only for the window.
"""
import json
import os
import sys
import time


def tree(pid):
    """The process and its children (by parent pid: a child forked by any of its threads)."""
    if not os.path.exists(f"/proc/{pid}"):
        return []
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return [pid] + kids


def sched(pids, per_pid):
    """Run and run-queue wait ns summed over every thread of the processes (schedstat); each
    process's run ns goes into `per_pid`."""
    run = wait = 0
    for p in pids:
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        mine = 0
        for t in tids:
            try:
                with open(f"/proc/{p}/task/{t}/schedstat") as f:
                    v = f.read().split()
                mine += int(v[0])
                wait += int(v[1])
            except (OSError, IndexError, ValueError):
                pass
        run += mine
        per_pid[p] = mine
    return run, wait


def machine():
    """Busy and total jiffies and context switches (/proc/stat); µs in which some task waited
    for a CPU (/proc/pressure/cpu, 0 where PSI is off)."""
    busy = total = ctxt = 0
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu "):
                v = [int(x) for x in line.split()[1:]]
                total = sum(v[:8])
                busy = total - v[3] - v[4]
            elif line.startswith("ctxt "):
                ctxt = int(line.split()[1])
    pressure = 0
    try:
        with open("/proc/pressure/cpu") as f:
            pressure = int(f.readline().rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        pass
    return busy, total, ctxt, pressure


def sample(out, spid, cpid, interval):
    """Machine and tree figures to OUT; each process's run ns to OUT.procs (`s:PID:NS` for the
    server's tree, `c:PID:NS` for the client's), for per-worker timelines."""
    trees = (tree(spid), tree(cpid))
    refreshed = time.monotonic()
    with open(out, "w") as f, open(out + ".procs", "w") as procs:
        while trees[0] or trees[1]:
            if time.monotonic() - refreshed > 1:
                # Workers start with their parent and end with it; a grown fleet adds some.
                trees, refreshed = (tree(spid), tree(cpid)), time.monotonic()
            t = time.time_ns() // 1000
            srv, cli = {}, {}
            row = (t, *machine(), *sched(trees[0], srv), *sched(trees[1], cli))
            f.write(" ".join(map(str, row)) + "\n")
            each = [f"s:{p}:{ns}" for p, ns in srv.items()] + [f"c:{p}:{ns}" for p, ns in cli.items()]
            procs.write(f"{t} " + " ".join(each) + "\n")
            f.flush()
            procs.flush()
            time.sleep(interval)


def spans(procs, t0, t1, busy=0.05):
    """Per process, the first and last sample in [t0, t1] in which it ran more than `busy` of
    a core, as seconds after t0: when each worker started and ended its part."""
    inside = [p for p in procs if t0 - 100_000 <= p[0] <= t1 + 100_000]
    out = {}
    for (ta, a), (tb, b) in zip(inside, inside[1:]):
        for key, ns in b.items():
            if key in a and (ns - a[key]) / 1000 / (tb - ta) > busy:
                first, _ = out.get(key, (tb, tb))
                out[key] = (first, tb)
    return {k: ((f - t0) / 1e6, (l - t0) / 1e6) for k, (f, l) in out.items()}


def quartiles(xs):
    xs = sorted(xs)
    if not xs:
        return None
    pick = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))]
    return [round(pick(0), 2), round(pick(0.5), 2), round(xs[-1], 2)]


def workers(procs, t0, t1):
    """When the server's and the client's workers ran during one broadcast: start and end
    offsets (min / median / max over each side's processes)."""
    sp = spans(procs, t0, t1)
    side = {}
    for tag, name in (("s", "srv"), ("c", "cli")):
        mine = [v for k, v in sp.items() if k.startswith(tag + ":")]
        side[name] = {"ran": len(mine), "start_s": quartiles([f for f, _ in mine]),
                      "end_s": quartiles([l for _, l in mine])}
    return side


def read_procs(path):
    procs = []
    try:
        for line in open(path):
            t, *each = line.split()
            procs.append((int(t), {k: int(ns) for k, ns in (e.rsplit(":", 1) for e in each)}))
    except OSError:
        pass
    return procs


def judge(out, client_json):
    # t, busy jiffies, total jiffies, ctxt, PSI some µs, srv run ns, srv wait ns, cli run, cli wait
    rows = [list(map(int, l.split())) for l in open(out) if l.strip()]
    procs = read_procs(out + ".procs")
    c = json.load(open(client_json))
    cpus = os.cpu_count()
    windows = []
    for b in c["broadcasts"]:
        if b.get("last_recv_us") is None or b.get("sent_ts_us") is None:
            continue
        inside = [r for r in rows if b["sent_ts_us"] <= r[0] <= b["last_recv_us"]]
        if len(inside) < 3:
            continue
        a, z = inside[0], inside[-1]
        d = [y - x for x, y in zip(a, z)]
        wall_us = d[0]
        got = b["received"] or 1
        windows.append((a[0], z[0]))
        print(json.dumps({
            "seq": b["seq"],
            "delivery_s": b["delivery_us"] / 1e6,
            "busy_pct": 100 * (d[5] + d[7]) / 1000 / (wall_us * cpus),
            "busy_pct_machine": 100 * d[1] / max(1, d[2]),
            "waiting_pct": 100 * d[4] / wall_us,
            "runq_tasks": (d[6] + d[8]) / 1000 / wall_us,
            "ctxt_per_msg": d[3] / got,
            "srv_us_per_msg": d[5] / 1000 / got,
            "cli_us_per_msg": d[7] / 1000 / got,
            "received": b["received"],
            "workers": workers(procs, b["sent_ts_us"], b["last_recv_us"]),
        }))
    # What the trees cost while nothing is sent: samples after the first broadcast and half a
    # second clear of every broadcast's window.
    if windows:
        calm = [r for r in rows if r[0] > windows[0][0] and
                not any(w0 - 500_000 <= r[0] <= w1 + 500_000 for w0, w1 in windows)]
        pairs = [(x, y) for x, y in zip(calm, calm[1:]) if y[0] - x[0] < 300_000]
        secs = sum(y[0] - x[0] for x, y in pairs) / 1e6
        if secs > 1:
            srv = sum(y[5] - x[5] for x, y in pairs) / 1e9 / secs
            cli = sum(y[7] - x[7] for x, y in pairs) / 1e9 / secs
            print(json.dumps({"idle_cpu_per_s": {"srv": srv, "cli": cli, "over_s": secs}}))


if __name__ == "__main__":
    if sys.argv[1] == "sample":
        interval = float(sys.argv[5]) if len(sys.argv) > 5 else 0.1
        sample(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), interval)
    else:
        judge(sys.argv[2], sys.argv[3])
