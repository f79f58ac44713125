#!/usr/bin/python3
"""faults.py - fault injection into the store's writes, with build/iofault.so (docs/faults.md).

usage: faults.py failat SCENARIO WORK [--kill] [--every K] [--expect-fail FILE]
       faults.py powerloss SCENARIO WORK [--expect-fail FILE]

A scenario (JSON) is a store's history: commands run without faults to reach the state before
(setup), then the steps under test, each an `afsp` command line (argv without `afsp --data D`)
or reads of files (of a mount) checked against files holding what they must read:
    {"name": "pull-small", "cache_max": "64M",
     "node": [...], "background": false,
     "setup": [{"args": [...], "kill_at": "OP\tPATH-PREFIX"}...],
     "steps": [{"args": [...]}, {"read": [[PATH, EXPECTED]...]}...],
     "repull": [...]}
With "background": true, the node completes the partial layers the steps leave (a mount's
verification) in the background, which no step's status vouches for: each of those layers may
then be partial or complete after a fault, even after a step that succeeded.
With "node" (the argv of `afsp node`), the steps run as its clients: the node is started first
(ready once it has a peer) and stopped with SIGTERM last, and the faults go to the node.
A setup command with kill_at is killed (SIGKILL) at its first counted call that matches OP and
whose path starts with PATH-PREFIX (relative to the data directory, e.g. "fsync\t/blobs"): the
way to leave what a dead process leaves (a reservation, a temporary file, an orphaned blob).

failat: for each step, and each N from 1 to the number of calls the step makes (every K-th with
--every), the step runs on a copy of the state before with its N-th call failing (ENOSPC for
writes, EIO for the rest), or, with --kill, killed with SIGKILL just before that call. Then: it
exited with 0 or 1 (no crash, no hang), with a message if 1; a failed fsync was not followed by
success; the store opens (afsp layers, afsp images) and holds no unverified byte
(build/storecheck); the complete layers and the images are between the state before and the
state after a clean run (all of the state after if the step said it succeeded); the next
writer (afsp prune --percent 0) opens it and leaves no temporary file and no blob file without
a record; and `repull`, if given, then succeeds.

powerloss: the steps run once, in one data directory, with every write, sync, rename, link and
unlink logged (AFSP_FAULT_LOG). For each sync point (an fsync or fdatasync, a write to an
O_DSYNC descriptor) the data directory is rebuilt as a disk would hold it after a power loss
right after that sync, in two variants (the model is in docs/faults.md):
  strict  a file holds the bytes of its last sync (none before one); a directory holds the names
          of its last fsync (the names it had when the log began, before one)
  eager   the same bytes, but every name made up to the next sync point is there (a file system
          that wrote its journal of names and not the data)
and each copy gets the same checks as a failed step in failat, the states before and after
being those of the step in flight (the last one done, between steps).

--drop-sync PREFIX (powerloss): a self-test of the checks. The fsyncs and fdatasyncs of the
files and directories whose path starts with PREFIX are left out of the model, as if the store
did not make them: the run must then fail.

--expect-fail FILE: lines "SCENARIO MODE REGEX  # reason": a failure of that scenario and mode
whose "case: problem" line the regular expression matches (re.search) is reported as a known
failure and does not fail the run; a known failure that does not happen fails it (so the list
stays true). Blank lines and lines starting with # are skipped.
Exit status: 0 if every case passed (known failures aside), 1 if not, 2 on a usage error.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

AFSP = os.environ.get("AFSP_BIN") or os.path.join(os.path.dirname(__file__), "../../build/afsp")
BUILD = os.path.dirname(os.path.abspath(AFSP))
SHIM = os.path.join(BUILD, "iofault.so")
CHECK = os.path.join(BUILD, "storecheck")
CMD_TIMEOUT = 120
READ = "import sys; sys.stdout.buffer.write(open(sys.argv[1], 'rb').read())"


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


# ---- running afsp --------------------------------------------------------------------------


def run_afsp(sc, data, args, env=None, timeout=CMD_TIMEOUT):
    cmd = [AFSP, "--data", data]
    if sc.get("cache_max"):
        cmd += ["--cache-max-bytes", sc["cache_max"]]
    e = dict(os.environ)
    for k in list(e):
        if k.startswith("AFSP_FAULT_") or k == "LD_PRELOAD":
            del e[k]
    e.update(env or {})
    try:
        p = subprocess.run(cmd + args, env=e, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "", "timed out after %d s" % timeout
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def shim_env(data, **kw):
    e = {"LD_PRELOAD": SHIM, "AFSP_FAULT_DIR": data}
    for k, v in kw.items():
        e["AFSP_FAULT_" + k.upper()] = str(v)
    return e


NODE_READY_SECS = 30


def node_start(sc, data, env, logpath):
    """Starts `afsp node` on data; returns (process, None) once it has a peer, or (None,
    problem) if it exits first (its status and last message) or has no peer in time."""
    cmd = [AFSP, "--data", data] + (["--cache-max-bytes", sc["cache_max"]]
                                     if sc.get("cache_max") else []) + sc["node"]
    e = dict(os.environ)
    for k in list(e):
        if k.startswith("AFSP_FAULT_") or k == "LD_PRELOAD":
            del e[k]
    e.update(env or {})
    out = open(logpath, "w")
    p = subprocess.Popen(cmd, env=e, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    out.close()
    t0 = time.monotonic()
    while time.monotonic() - t0 < NODE_READY_SECS:
        if p.poll() is not None:
            return None, (p.returncode, tail(logpath))
        rc, so, se = run_afsp(sc, data, ["peers", "--json"], timeout=10)
        if rc == 0 and json.loads(so).get("peers"):
            return p, None
        try:  # the node's answer is the wait; this only bounds a node that has no peer yet
            p.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            pass
    node_stop(p)
    return None, (None, "no peer after %d s" % NODE_READY_SECS)


def node_stop(p):
    """SIGTERM; its exit status, or None if it had to be killed."""
    p.terminate()
    try:
        return p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return None


def tail(path, n=300):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:].strip()
    except OSError:
        return ""


def run_life(sc, data, node_env, client_env, marks=None, on_step=None):
    """Runs the steps of scenario sc on data, with its node around them if it has one (node
    start and stop are steps then). marks(i, what) is called before and after step i; on_step(i)
    after it. Returns (list of step statuses, problems)."""
    probs, statuses = [], []
    steps = [("read", st["read"]) if "read" in st else ("args", st["args"]) for st in sc["steps"]]
    if sc.get("node"):
        steps = [("start", None)] + steps + [("stop", None)]
    node = None
    nodelog = data.rstrip("/") + ".node.log"
    for i, (kind, args) in enumerate(steps):
        if marks:
            marks(i, "begin")
        if kind == "start":
            node, why = node_start(sc, data, node_env, nodelog)
            if not why:
                statuses.append(0)
            else:
                rc, msg = why
                statuses.append(rc)
                if rc is None or rc not in (1,):
                    probs.append("the node does not start cleanly (status %s): %s" % (rc, msg))
                elif "afsp" not in msg:
                    probs.append("the node exits without a message")
        elif kind == "stop":
            if node:
                rc = node_stop(node)
                statuses.append(rc)
                if rc is None:
                    probs.append("the node does not stop on SIGTERM")
                elif rc not in (0, 1):
                    probs.append("the node exits with status %s: %s" % (rc, tail(nodelog)))
            else:
                statuses.append(0)
        elif kind == "read":
            statuses.append(0)
            for path, want in args:  # a file of a mount, and a file with what it must hold
                try:  # in a child: a read that hangs must not hang the run
                    p = subprocess.run([sys.executable, "-c", READ, path], capture_output=True,
                                       timeout=CMD_TIMEOUT)
                except subprocess.TimeoutExpired:
                    probs.append("reading %s hangs" % path)
                    continue
                if p.returncode != 0:
                    statuses[-1] = 1  # a read may fail (EIO); it must not return wrong bytes
                    continue
                with open(want, "rb") as f:
                    if p.stdout != f.read():
                        probs.append("reading %s returns wrong bytes" % path)
        else:
            rc, so, se = run_afsp(sc, data, args, client_env)
            statuses.append(rc)
            if rc is None:
                probs.append("afsp %s hangs" % " ".join(args))
            elif rc not in (0, 1, -9):
                probs.append("afsp %s exits with status %d: %s" % (" ".join(args), rc,
                                                                  se.strip()[-300:]))
            elif rc == 1 and "afsp" not in se:
                probs.append("afsp %s fails without a message" % " ".join(args))
        if marks:
            marks(i, "end")
        if on_step:
            on_step(i)
    for m in sc.get("mounts", []):  # left mounted by a step that failed
        if is_mounted(m):
            subprocess.run(["fusermount3", "-uz", m], capture_output=True)
    return statuses, probs


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(ln.split()[4] == path for ln in f)


KEY_FILES = ("node.key", "cluster.key")


def storecheck(data):
    """(state, problems): state = (complete layer digests, (ref, manifest) pairs, all layers,
    key files as (name, bytes) pairs)."""
    keys = []
    for k in KEY_FILES:
        if os.path.isfile(os.path.join(data, k)):
            with open(os.path.join(data, k), "rb") as f:
                keys.append((k, f.read()))
    if not os.path.exists(os.path.join(data, "store", "data.mdb")):
        return (frozenset(), frozenset(), frozenset(), frozenset(keys)), []  # no store: empty
    p = subprocess.run([CHECK, data], capture_output=True, timeout=CMD_TIMEOUT)
    if p.returncode == 2 or not p.stdout.strip():
        return None, ["storecheck cannot open the store: %s" % p.stderr.decode().strip()]
    j = json.loads(p.stdout)
    state = (frozenset(l["digest"] for l in j["layers"] if l["complete"]),
             frozenset((i["ref"], i["manifest"]) for i in j["images"]),
             frozenset(l["digest"] for l in j["layers"]), frozenset(keys))
    return state, j["problems"]


def short(d):
    return d.replace("sha256:", "")[:12]


def bounds(state, lo, hi, exact=False, background=False):
    """Problems of state against the states before (lo) and after (hi) a step: what both have
    must be there, nothing that neither has (exact: hi, neither more nor less). background: the
    node completes partial layers in the background (a mount's verification), which no step's
    status vouches for (it may finish or not before the node stops, or fail on a fault); so a
    layer the step leaves partial or complete may be either, and only the layers complete both
    before and after must be."""
    out = []
    for what, i in (("complete layers", 0), ("images", 1), ("key files", 3)):
        c = state[i]
        want_lo = hi[i] if exact else lo[i] & hi[i]
        want_hi = hi[i] if exact else lo[i] | hi[i]
        if i == 0 and background:
            want_lo, want_hi = lo[0] & hi[0], want_hi | hi[2]
        fmt = {0: lambda s: sorted(short(x) for x in s), 1: sorted,
               3: lambda s: sorted("%s (%d bytes)" % (k, len(b)) for k, b in s)}[i]
        if want_lo - c:
            out.append("%s lost: %s" % (what, fmt(want_lo - c)))
        if c - want_hi:
            out.append("%s that should not be there: %s" % (what, fmt(c - want_hi)))
    return out


def leftovers(data, state):
    out = []
    tmp = os.path.join(data, "tmp")
    if os.path.isdir(tmp) and os.listdir(tmp):
        out.append("files left in DATA/tmp: %s" % sorted(os.listdir(tmp)))
    blobs = os.path.join(data, "blobs", "sha256")
    recs = {d.replace("sha256:", "") for d in state[2]} if state else set()
    if os.path.isdir(blobs):
        orphans = [n for n in os.listdir(blobs) if n not in recs]
        if orphans:
            out.append("blob files without a record: %s" % sorted(short(n) for n in orphans))
    return out


def key_sizes(state):
    """A state whose key files are compared by name and size (keys are random in each run)."""
    return state[:3] + (frozenset((k, b"?" * len(b)) for k, b in state[3]),)


def check_store(sc, data, lo, hi, exact=False, key_bytes=True):
    """The checks of a store after a fault: problems (strings), [] if none."""
    if not key_bytes:
        lo, hi = key_sizes(lo), key_sizes(hi)
    out = []
    for what in ("layers", "images"):
        rc, so, se = run_afsp(sc, data, [what, "--json"])
        if rc != 0:
            out.append("afsp %s fails: %s" % (what, se.strip()))
        else:
            try:
                json.loads(so)
            except ValueError:
                out.append("afsp %s --json prints no JSON" % what)
    state, probs = storecheck(data)
    out += ["storecheck: " + p for p in probs]
    if state is None:
        return out
    out += bounds(state if key_bytes else key_sizes(state), lo, hi, exact,
                  sc.get("background", False))
    rc, so, se = run_afsp(sc, data, ["prune", "--percent", "0"])
    if rc != 0:
        out.append("the next writer (afsp prune --percent 0) fails: %s" % se.strip())
        return out
    state2, probs = storecheck(data)
    out += ["after the next writer: storecheck: " + p for p in probs]
    out += ["after the next writer: " + p for p in leftovers(data, state2)]
    if state2 and state2[:2] != state[:2]:
        out.append("the next writer changed what the store holds")
    if sc.get("repull") and not out:
        rc, so, se = run_afsp(sc, data, sc["repull"])
        if rc != 0:
            out.append("afsp %s fails afterwards: %s" % (" ".join(sc["repull"]), se.strip()))
        else:
            state3, probs = storecheck(data)
            out += ["after the repull: storecheck: " + p for p in probs]
    return out


# ---- known failures ------------------------------------------------------------------------


class Results:
    def __init__(self, scenario, mode, expect_file):
        self.scenario, self.mode = scenario, mode
        self.expected = []
        if expect_file:
            for ln in open(expect_file):
                if not ln.strip() or ln.startswith("#"):
                    continue
                ln = ln.split("  # ", 1)
                reason = ln[1].strip() if len(ln) > 1 else ""
                f = ln[0].split(None, 2)
                if len(f) == 3 and f[0] == scenario and f[1] == mode:
                    self.expected.append([re.compile(f[2].strip()), reason, 0])
        self.failures, self.known, self.cases = [], [], 0

    def case(self, label, problems):
        self.cases += 1
        for p in problems:
            for e in self.expected:
                if e[0].search("%s: %s" % (label, p)):
                    e[2] += 1
                    self.known.append("%s: %s" % (label, p))
                    break
            else:
                self.failures.append("%s: %s" % (label, p))
                log("FAIL %s: %s" % (label, p))

    def finish(self):
        for k in self.known[:5]:
            log("known failure: %s" % k)
        if len(self.known) > 5:
            log("... %d known failures in all" % len(self.known))
        for e in self.expected:
            if e[2] == 0:
                self.failures.append("the known failure '%s' (%s) did not happen: take it off the "
                                     "list" % (e[0].pattern, e[1]))
                log("FAIL " + self.failures[-1])
        log("%s %s: %d cases, %d failures, %d known failures" % (
            self.scenario, self.mode, self.cases, len(self.failures), len(self.known)))
        return 1 if self.failures else 0


# ---- building states -----------------------------------------------------------------------


def copy_data(src, dst):
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True)


def calls_of(sc, data, args, scratch):
    """The counted calls of afsp ARGS on a copy of data: a list of (op, path)."""
    copy_data(data, scratch)
    cf = scratch + ".count"
    if os.path.exists(cf):
        os.unlink(cf)
    rc, so, se = run_afsp(sc, scratch, args, shim_env(scratch, count=cf))
    calls = []
    if os.path.exists(cf):
        calls = [tuple(ln.rstrip("\n").split("\t")[1:3]) for ln in open(cf)]
        os.unlink(cf)
    shutil.rmtree(scratch)
    return rc, se, calls


def run_setup(sc, data, work):
    """Runs the scenario's setup in data (made empty first)."""
    if os.path.exists(data):
        shutil.rmtree(data)
    os.makedirs(data)
    for st in sc.get("setup", []):
        env = None
        if st.get("kill_at"):
            op, prefix = st["kill_at"].split("\t")
            _, _, calls = calls_of(sc, data, st["args"], os.path.join(work, "scratch"))
            n = next((i + 1 for i, c in enumerate(calls) if c[0] == op and c[1].startswith(prefix)),
                     None)
            if n is None:
                sys.exit("setup: afsp %s makes no call %r" % (" ".join(st["args"]), st["kill_at"]))
            env = shim_env(data, kill_at=n)
        rc, so, se = run_afsp(sc, data, st["args"], env)
        if rc != (-9 if env else 0):
            sys.exit("setup: afsp %s: status %s: %s" % (" ".join(st["args"]), rc, se.strip()))


# ---- failat --------------------------------------------------------------------------------


def sample(ncalls, every):
    ns = list(range(1, ncalls + 1, every))
    if ns and ns[-1] != ncalls:
        ns.append(ncalls)
    return ns


def read_calls(cf):
    calls = []
    if os.path.exists(cf):
        calls = [tuple(ln.rstrip("\n").split("\t")[1:3]) for ln in open(cf)]
        os.unlink(cf)
    return calls


def failat(sc, work, kill, every, expect):
    mode = "killat" if kill else "failat"
    res = Results(sc["name"], mode, expect)
    data, before = os.path.join(work, "data"), os.path.join(work, "before")
    case_dir = os.path.join(work, "case")
    run_setup(sc, data, work)
    if sc.get("node"):
        failat_node(sc, work, kill, every, res, data, before, case_dir)
        shutil.rmtree(case_dir, ignore_errors=True)
        return res.finish()
    for si, step in enumerate(sc["steps"]):
        args = step["args"]
        copy_data(data, before)
        lo, probs = storecheck(before)
        if probs:
            sys.exit("the state before step %d is not clean: %s" % (si, probs))
        rc, se, calls = calls_of(sc, before, args, os.path.join(work, "scratch"))
        if rc != 0:
            sys.exit("step %d (afsp %s) fails without a fault: %s" % (si, " ".join(args), se))
        if not calls:
            sys.exit("step %d (afsp %s): the shim sees no call (%s not preloaded?)" % (
                si, " ".join(args), SHIM))
        rc, so, se = run_afsp(sc, data, args)  # the clean run: the state after
        hi, probs = storecheck(data)
        if rc != 0 or probs:
            sys.exit("step %d (afsp %s) is not clean: %s %s" % (si, " ".join(args), se, probs))
        ns = sample(len(calls), every)
        log("%s %s step %d (afsp %s): %d calls, %d cases" % (
            sc["name"], mode, si, " ".join(args), len(calls), len(ns)))
        t0 = time.monotonic()
        for n in ns:
            copy_data(before, case_dir)
            op, path = calls[n - 1]
            label = "%s %s step %d N=%d (%s %s)" % (sc["name"], mode, si, n, op, path)
            env = shim_env(case_dir, **({"kill_at": n} if kill else {"fail_at": n}))
            rc, so, se = run_afsp(sc, case_dir, args, env)
            probs = []
            if rc is None:
                probs.append("the step hangs (%s)" % se)
            elif kill and rc != -9:
                probs.append("not killed (status %d): its calls are not the same every run" % rc)
            elif not kill and rc not in (0, 1):
                probs.append("exits with status %d: %s" % (rc, se.strip()[-300:]))
            elif rc == 1 and "afsp" not in se:
                probs.append("fails without a message")
            elif rc == 0 and op in ("fsync", "fdatasync") and path != "/store/data.mdb":
                # (LMDB's own: a failed sync fails its commit, so the state after shows it)
                probs.append("a failed %s is ignored: the step says it succeeded" % op)
            if not probs:
                probs = check_store(sc, case_dir, lo, hi, exact=(rc == 0))
            res.case(label, probs)
        log("step %d: %d cases in %.1f s" % (si, len(ns), time.monotonic() - t0))
        shutil.rmtree(before)
    shutil.rmtree(case_dir, ignore_errors=True)
    return res.finish()


def failat_node(sc, work, kill, every, res, data, before, case_dir):
    """A scenario with a node: the calls are the node's, over its life (start, the steps as
    its clients, SIGTERM). A node's calls vary from run to run (peers, timing), so each case
    reports the call it failed from its own count."""
    mode = "killat" if kill else "failat"
    copy_data(data, before)
    lo, probs = storecheck(before)
    cf = os.path.join(work, "count")
    read_calls(cf)
    statuses, probs = run_life(sc, data, shim_env(data, count=cf), None)
    calls = read_calls(cf)
    hi, p2 = storecheck(data)
    if probs or p2 or any(st != 0 for st in statuses):
        sys.exit("the node's life is not clean without a fault: %s %s %s" % (statuses, probs, p2))
    ns = sample(len(calls), every)
    log("%s %s: the node makes %d calls; %d cases" % (sc["name"], mode, len(calls), len(ns)))
    t0 = time.monotonic()
    for n in ns:
        copy_data(before, case_dir)
        env = shim_env(case_dir, count=cf, **({"kill_at": n} if kill else {"fail_at": n}))
        statuses, probs = run_life(sc, case_dir, env, None)
        got = read_calls(cf)
        op, path = got[n - 1] if len(got) >= n else ("(none: the node made %d calls)" % len(got),
                                                     "")
        label = "%s %s N=%d (%s %s)" % (sc["name"], mode, n, op, path)
        if kill:
            probs = [p for p in probs if "status -9" not in p and "start cleanly (status -9)"
                     not in p]
        ok = all(st == 0 for st in statuses)
        if not probs:
            probs = check_store(sc, case_dir, lo, hi, exact=ok and not kill, key_bytes=False)
        res.case(label, probs)
    log("%s %s: %d cases in %.1f s" % (sc["name"], mode, len(ns), time.monotonic() - t0))
    shutil.rmtree(before)


# ---- powerloss: the disk model -------------------------------------------------------------


class Node:
    """A file (cur: bytearray, dur: bytes) or a directory (cur, dur: name -> Node)."""
    __slots__ = ("isdir", "cur", "dur")

    def __init__(self, isdir, cur=None, dur=None):
        self.isdir = isdir
        self.cur = cur if cur is not None else ({} if isdir else bytearray())
        self.dur = dur if dur is not None else ({} if isdir else b"")


IGNORED = {"store/lock.mdb"}  # LMDB's lock file: reset by the first process that opens it


def load(path, rel=""):
    if os.path.isdir(path):
        n = Node(True)
        for e in sorted(os.listdir(path)):
            r = (rel + "/" + e).lstrip("/")
            if r in IGNORED:
                continue
            n.cur[e] = load(os.path.join(path, e), r)
        n.dur = dict(n.cur)
        return n
    with open(path, "rb") as f:
        b = f.read()
    return Node(False, bytearray(b), bytes(b))


class Disk:
    def __init__(self, snapshot, datafile):
        self.root = load(snapshot)
        self.ino = {}
        self.names = {}  # inode number -> the path it was last opened at (for messages)
        self.data = open(datafile, "rb")

    def name_of(self, ino):
        return self.names.get(int(ino), "inode " + ino)

    def lookup(self, rel, create_parent=False):
        parts = [p for p in rel.split("/") if p and p != "."]
        d = self.root
        for p in parts[:-1]:
            d = d.cur.get(p)
            if d is None or not d.isdir:
                raise KeyError(rel)
        return d, (parts[-1] if parts else None)

    def apply(self, f):
        """Applies one log line; returns True if it is a sync point."""
        op = f[0]
        if op == "open":
            ino, created, trunc, rel = int(f[1]), f[2] == "1", f[3] == "1", f[5]
            self.names[ino] = rel
            if rel in IGNORED:
                self.ino[ino] = None
                return False
            parent, name = self.lookup(rel)
            n = parent.cur.get(name) if name else self.root
            if n is None or (created and not n.isdir):
                n = Node(False)
                parent.cur[name] = n
            if trunc and not n.isdir:
                n.cur = bytearray()
            self.ino[ino] = n
            return False
        if op == "write":
            n = self.ino.get(int(f[1]), False)
            if n is None:
                return False  # the lock file
            if n is False:
                raise KeyError("write to an inode never opened: %s" % f[1])
            off, ln, doff, sync = int(f[2]), int(f[3]), int(f[4]), f[5] == "1"
            self.data.seek(doff)
            b = self.data.read(ln)
            put(n.cur, off, b)
            if sync:
                d = bytearray(n.dur)
                put(d, off, b)
                n.dur = bytes(d)
            return sync
        if op == "fsync":
            n = self.ino.get(int(f[1]), False)
            if n is None:
                return False
            if n is False:
                raise KeyError("fsync of an inode never opened: %s" % f[1])
            n.dur = dict(n.cur) if n.isdir else bytes(n.cur)
            return True
        if op == "trunc":
            n = self.ino.get(int(f[1]))
            if n is not None:
                ln = int(f[2])
                if ln < len(n.cur):
                    del n.cur[ln:]
                else:
                    n.cur.extend(b"\0" * (ln - len(n.cur)))
            return False
        if op in ("rename", "link"):
            pa, na = self.lookup(f[1])
            pb, nb = self.lookup(f[2])
            n = pa.cur[na] if op == "link" else pa.cur.pop(na)
            pb.cur[nb] = n
            return False
        if op in ("unlink", "rmdir"):
            if f[1] in IGNORED:
                return False
            p, name = self.lookup(f[1])
            p.cur.pop(name, None)
            return False
        if op == "mkdir":
            p, name = self.lookup(f[1])
            p.cur[name] = Node(True)
            return False
        if op == "syncall":
            stack = [self.root]
            while stack:
                n = stack.pop()
                n.dur = dict(n.cur) if n.isdir else bytes(n.cur)
                if n.isdir:
                    stack.extend(n.cur.values())
            return True
        raise KeyError("not modelled: %s" % "\t".join(f))

    def build(self, dst, names):
        """Writes the disk after a power loss into dst: names 'dur' (strict) or 'cur' (eager)."""
        if os.path.exists(dst):
            shutil.rmtree(dst)

        def walk(n, path, seen):
            os.mkdir(path)
            if id(n) in seen:  # a loop through names not yet durable: not possible, but bounded
                return
            for name, c in getattr(n, names).items():
                p = os.path.join(path, name)
                if c.isdir:
                    walk(c, p, seen | {id(n)})
                else:
                    with open(p, "wb") as fh:
                        fh.write(c.dur)
        walk(self.root, dst, frozenset())


def put(buf, off, b):
    if len(buf) < off:
        buf.extend(b"\0" * (off - len(buf)))
    buf[off:off + len(b)] = b


def powerloss(sc, work, expect, drop_sync=None):
    res = Results(sc["name"], "powerloss", expect)
    data, snap = os.path.join(work, "data"), os.path.join(work, "snapshot")
    logf, img = os.path.join(work, "log"), os.path.join(work, "image")
    run_setup(sc, data, work)
    copy_data(data, snap)
    states = [storecheck(snap)]
    if states[0][1]:
        sys.exit("the state before is not clean: %s" % states[0][1])
    for f in (logf, logf + ".data"):
        if os.path.exists(f):
            os.unlink(f)
    t0 = time.monotonic()

    def marks(i, what):
        with open(logf, "a") as fh:
            fh.write("mark\t%s\t%d\n" % (what, i))

    def on_step(i):
        states.append(storecheck(data))
        if states[-1][1]:
            sys.exit("step %d leaves a store that does not check out: %s" % (i, states[-1][1]))

    env = shim_env(data, log=logf)
    statuses, probs = run_life(sc, data, env, env, marks, on_step)
    if probs or any(st != 0 for st in statuses):
        sys.exit("the steps fail without a fault: %s %s" % (statuses, probs))
    log("%s powerloss: %d steps run and logged in %.1f s (%d bytes written)" % (
        sc["name"], len(statuses), time.monotonic() - t0, os.path.getsize(logf + ".data")))
    disk = Disk(snap, logf + ".data")
    lines = [ln.rstrip("\n").split("\t") for ln in open(logf)]
    k, step, done, pending, names_since = 0, None, -1, None, False
    t0 = time.monotonic()

    def check(label, names, lo_i, hi_i):
        disk.build(img, names)
        res.case(label, check_store(sc, img, states[lo_i][0], states[hi_i][0]))

    for li, f in enumerate(lines):
        if drop_sync and f[0] == "fsync" and disk.name_of(f[1]).startswith(drop_sync):
            continue
        if f[0] == "mark":
            if f[1] == "begin":
                step = int(f[2])
            else:
                step, done = None, int(f[2])
            continue
        is_sync = f[0] in ("fsync", "syncall") or (f[0] == "write" and f[5] == "1")
        if is_sync and pending and names_since:
            check(*pending)
        if is_sync:
            pending = None
        try:
            disk.apply(f)
        except KeyError as e:
            sys.exit("log line %d (%s): %s" % (li + 1, "\t".join(f), e))
        if f[0] in ("rename", "link", "unlink", "rmdir", "mkdir") or (
                f[0] == "open" and (f[2] == "1" or f[3] == "1")):
            names_since = True
        if is_sync:
            k += 1
            where = ("step %d" % step) if step is not None else ("after step %d" % done)
            lo_i = (step if step is not None else done + 1)
            hi_i = (step + 1 if step is not None else done + 1)
            label = "%s powerloss sync %d (%s, %s %s)" % (sc["name"], k, where, f[0],
                                                         disk.name_of(f[1]) if f[0] != "syncall"
                                                         else "")
            check(label + " strict", "dur", lo_i, hi_i)
            pending, names_since = (label + " eager", "cur", lo_i, hi_i), False
    if pending and names_since:
        check(*pending)
    log("%s powerloss: %d sync points, %d copies checked in %.1f s" % (
        sc["name"], k, res.cases, time.monotonic() - t0))
    shutil.rmtree(img, ignore_errors=True)
    return res.finish()


def main():
    a = sys.argv[1:]
    if len(a) < 3 or a[0] not in ("failat", "powerloss"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, sc, work = a[0], json.load(open(a[1])), a[2]
    kill = "--kill" in a
    every = int(a[a.index("--every") + 1]) if "--every" in a else 1
    expect = a[a.index("--expect-fail") + 1] if "--expect-fail" in a else None
    os.makedirs(work, exist_ok=True)
    work = os.path.realpath(work)
    if mode == "failat":
        return failat(sc, work, kill, every, expect)
    drop = a[a.index("--drop-sync") + 1] if "--drop-sync" in a else None
    return powerloss(sc, work, expect, drop)


if __name__ == "__main__":
    sys.exit(main())
