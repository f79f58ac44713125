#!/usr/bin/env python3
"""timeline.py TRACE [--all | --reads | --steps]: the timeline of one cold start from an AFSP_TRACE file.

Every afsp process started with AFSP_TRACE=FILE appends "SECONDS PID WHO EVENT..." lines to
FILE (util/util.h). This reads the last `afsp mount` in FILE and everything after it, and prints
where the time went: the mount's steps (the image resolved through the node, its layers opened,
FUSE ready), the program's reads, and each chunk fetch cut into its steps (the mount's ask over
the control socket, the node's task, the peer's answer, the write made durable, the answer back).
--all: every event, in milliseconds from the mount's start.
--reads: each FUSE read's latency (its arrival to its answer), in milliseconds, one a line.
--steps: the steps alone, "NAME<TAB>MS" a line (a step not in the file is left out).
"""
import statistics
import sys


def load(path):
    ev = []
    with open(path) as f:
        for line in f:
            p = line.split(None, 4)
            if len(p) < 4:
                continue
            ev.append((float(p[0]), int(p[1]), p[2], p[3], p[4].strip() if len(p) > 4 else ""))
    return ev


def ms(x):
    return "%.1f" % (x * 1000)


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))] if v else 0.0


def read_latencies(reads):
    """Each read's time from its arrival to its answer, in seconds."""
    rd, rlat = {}, []
    for e in reads:
        key = e[4].split()[0]
        if e[3] == "read":
            rd[key] = e[0]
        elif key in rd:
            rlat.append(e[0] - rd.pop(key))
    return rlat


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    ev = load(sys.argv[1])
    starts = [i for i, e in enumerate(ev) if e[2] == "mount" and e[3] == "start"]
    if not starts:
        sys.exit("timeline.py: no `afsp mount` in " + sys.argv[1])
    ev = ev[starts[-1]:]
    t0 = ev[0][0]
    if "--all" in sys.argv[2:]:
        for t, pid, who, what, rest in ev:
            print("%9.2f %7d %-6s %s %s" % ((t - t0) * 1000, pid, who, what, rest))
        return
    reads = [e for e in ev if e[2] == "mount" and e[3] in ("read", "read_done")]
    rlat = read_latencies(reads)
    if "--reads" in sys.argv[2:]:
        for v in rlat:
            print(ms(v))
        return

    def first(who, what, rest=None):
        for e in ev:
            if e[2] == who and e[3] == what and (rest is None or e[4].startswith(rest)):
                return e[0] - t0
        return None

    steps = [("mount command started", first("mount", "start")),
             ("the node has a peer's index (checked)", first("node", "fetch_new", "checked")),
             ("... and has stored it (LMDB put and commit)", first("node", "fetch_new", "added")),
             ("image resolved by the node (manifest, config, indexes)", first("mount", "mount", "image found")),
             ("the mount's serving process started", first("mount", "mount", "serving")),
             ("layers opened (indexes parsed lean)", first("mount", "image", "open")),
             ("tree built", first("mount", "tree", "built")),
             ("FUSE mounted, ready", first("mount", "mount", "ready")),
             ("first read of the program", first("mount", "read"))]
    last = reads[-1][0] - t0 if reads else None
    steps.append(("last read answered", last))
    if "--steps" in sys.argv[2:]:
        for name, t in steps:
            if t is not None:
                print("%s\t%s" % (name, ms(t)))
        return
    print("step | ms from `afsp mount`")
    print("---|---")
    for name, t in steps:
        print("%s | %s" % (name, "-" if t is None else ms(t)))

    # the node's pull for the mount: its blob requests (manifest, config, index)
    blobs = {}
    for e in ev:
        if e[3] == "blob_req":
            blobs.setdefault(e[1], []).append([e[0], None, e[4]])
        elif e[3] == "blob_done":
            for b in blobs.get(e[1], []):
                if b[1] is None:
                    b[1] = e[0]
                    break
    print()
    for pid, bl in blobs.items():
        for a, b, what in bl:
            print("blob request %s: %s ms at %s" % (what, "-" if b is None else ms(b - a), ms(a - t0)))

    # chunk fetches: mount's ask -> answer; the node's steps in between
    asks, open_ = [], {}
    for e in ev:
        if e[2] == "mount" and e[3] == "fetch_ask":
            rng = e[4].split()[1]
            open_[rng] = e[0]
        elif e[2] == "mount" and e[3] == "fetch_answer":
            rng = e[4].split()[0]
            if rng in open_:
                asks.append((open_.pop(rng), e[0]))
    lat = [b - a for a, b in asks]
    busy = 0.0
    end = 0.0
    for a, b in sorted(asks):  # time with at least one fetch outstanding
        if b > end:
            busy += b - max(a, end)
            end = b
    nreq = sum(1 for e in ev if e[3] == "chunk_req")
    net = {}
    rtt = []
    for e in ev:
        if e[3] == "chunk_req":
            net.setdefault(e[4].split()[0], []).append(e[0])
        elif e[3] == "chunk_done" and net.get(e[4].split()[0]):
            rtt.append(e[0] - net[e[4].split()[0]].pop(0))
    seg = {"task start": [], "to request": [], "sync": [], "mark": [],
           "flush to answer": []}
    cur = {}
    for e in ev:
        k = e[3]
        if k == "ctl" and e[4].endswith("fetch"):
            cur = {"ctl": e[0]}
        elif k == "task" and "ctl" in cur and "task" not in cur:
            cur["task"] = e[0]
            seg["task start"].append(e[0] - cur["ctl"])
        elif k == "chunk_req" and "task" in cur and "req" not in cur:
            cur["req"] = e[0]
            seg["to request"].append(e[0] - cur["task"])
        elif k == "flush" and e[4].startswith("synced") and "flush" in cur:
            seg["sync"].append(e[0] - cur["flush"])
            cur["synced"] = e[0]
        elif k == "flush" and e[4].startswith("marked") and "synced" in cur:
            seg["mark"].append(e[0] - cur["synced"])
        elif k == "flush" and "chunks" in e[4]:
            cur["flush"] = e[0]
        elif k == "ctl_answer" and "task" in cur:
            seg["flush to answer"].append(e[0] - cur.get("flush", e[0]))
            cur = {}
    print()
    print("chunk fetches: %d asks of the mount (%d chunk requests to peers), %s ms with one or "
          "more outstanding; ask to answer median %s ms, p90 %s ms" %
          (len(asks), nreq, ms(busy), ms(statistics.median(lat)) if lat else "-", ms(pct(lat, 0.9))))
    print("a chunk request to the peer and its answer: median %s ms (%d)" %
          (ms(statistics.median(rtt)) if rtt else "-", len(rtt)))
    for k, v in seg.items():
        if v:
            print("  %s: median %s ms, total %s ms (%d)" % (k, ms(statistics.median(v)), ms(sum(v)), len(v)))
    print("reads: %d, median %s ms, p99 %s ms, max %s ms" %
          (len(rlat), ms(statistics.median(rlat)) if rlat else "-", ms(pct(rlat, 0.99)),
           ms(max(rlat)) if rlat else "-"))


main()
