#!/usr/bin/python3
"""check-tools.py - every external command that the tests, scripts and benchmarks call must come
from a Debian package that scripts/deps.sh installs, or from a package those depend on, or from
an Essential package (on every Debian system). A fresh machine has nothing else.

usage: scripts/check-tools.py [--root DIR] [--path PATH] [-v]

  --root DIR   the tree to scan (default: this script's repository); its scripts/deps.sh is
               the package list
  --path PATH  the PATH commands are looked up in (default: $PATH, as the tests see it)
  -v           list every tool with the file that PATH finds, its package and why that
               package is there

What is scanned: tests/integration/*.sh and *.py, scripts/*.sh, bench/*.sh and *.py, .ci/run, the
C files of tests/ and bench/ and cmd/ (system(), popen(), exec*p() and the helpers that pass their
argument on to those, e.g. a SH(fmt, ...) macro), the Makefile's recipes and $(shell ...) calls,
and the #! line of executable scripts (scripts/toolscan.py does it; shell commands are found by
scripts/shparse.py). Command wrappers (`timeout 5 CMD`, `env A=1 CMD`, `xargs CMD`, `sh -c STR`,
`eval STR`, `find -exec CMD`, a script function that runs "$@" after its own arguments, like
lib.sh's start_bg, and one that evals them) are followed to the command they run; the tools a
function checks with `type -P` (lib.sh's require) and a `[ -x /bin/busybox ]` are tools too; `eval
"$v"` takes each string $v is given (50-mount.sh's list of writes); a command run in a chroot is
the image's, not this machine's, and is not checked. Builtins and keywords (from bash itself:
compgen), the scripts' own functions, variables that are not a single literal path, and the
project's own programs (relative paths: build/afsp, "$LIB_DIR/x.py") are not tools.

What a tool must be: the file that PATH finds for it (or the absolute path written), followed
through its symlinks (Debian's alternatives too), must be in the file list of an installed
package (/var/lib/dpkg/info/*.list, usr-merge aware) that is in the closure: the packages
deps.sh lists, every package that is Essential: yes, and recursively every installed package
that satisfies one of their Depends or Pre-Depends (any alternative that is installed counts,
and so do the installed providers of a virtual package). A tool that is not found at all, or
that is found outside that closure, fails the check with every file:line that calls it, and
the package it is from (or, for a tool that is not installed, an installed package that has it
off PATH: offline, dpkg knows only the installed packages' files).

Exit status: 0 when every tool is covered, 1 when one is not (or deps.sh lists a package that
is not installed), 2 on a usage error.
"""

import glob
import os
import re
import subprocess
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from toolscan import scan  # noqa: E402

# ---- packages --------------------------------------------------------------------------------


def usr_aliases():
    """/bin -> /usr/bin and the like (usr-merge), from the file system itself."""
    out = []
    for e in os.listdir("/"):
        p = "/" + e
        if os.path.islink(p) and os.path.isdir(p):
            out.append((p, os.path.realpath(p)))
    return out


ALIASES = usr_aliases()


def canon(path):
    for a, b in ALIASES:
        if path == a or path.startswith(a + "/"):
            return b + path[len(a) :]
    return path


def file_owners():
    owners = defaultdict(set)
    for f in glob.glob("/var/lib/dpkg/info/*.list"):
        pkg = os.path.basename(f)[:-5].split(":")[0]
        with open(f, errors="replace") as fh:
            for ln in fh:
                owners[canon(ln.rstrip("\n"))].add(pkg)
    return owners


def installed_packages():
    fmt = "\\t".join(("${Package}", "${db:Status-Status}", "${Essential}", "${Pre-Depends}",
                      "${Depends}", "${Provides}")) + "\\n"
    out = subprocess.run(["dpkg-query", "-W", "-f=" + fmt], capture_output=True, text=True).stdout
    pkgs, provides = {}, defaultdict(set)
    for ln in out.splitlines():
        f = ln.split("\t")
        if len(f) < 6 or f[1] != "installed":
            continue
        p = pkgs.setdefault(f[0], {"essential": False, "deps": []})
        p["essential"] |= f[2] == "yes"
        for clause in (f[3] + "," + f[4]).split(","):
            alts = [re.sub(r"[ (:].*", "", a.strip()) for a in clause.split("|") if a.strip()]
            if alts:
                p["deps"].append(alts)
        for v in f[5].split(","):
            if v.strip():
                provides[re.sub(r"[ (:].*", "", v.strip())].add(f[0])
    return pkgs, provides


def closure(roots, pkgs, provides):
    """Every installed package the roots pull in: name -> the package that pulled it in."""
    why, todo = {}, []
    for r, reason in roots:
        if r in pkgs and r not in why:
            why[r] = reason
            todo.append(r)
    while todo:
        p = todo.pop()
        for alts in pkgs[p]["deps"]:
            for a in alts:
                for q in ([a] if a in pkgs else []) + sorted(provides.get(a, ())):
                    if q not in why:
                        why[q] = p
                        todo.append(q)
    return why


def chain(why, p):
    out = [p]
    while why.get(out[-1]) in why and len(out) < 12:
        out.append(why[out[-1]])
    return " <- ".join(out) + " <- " + why[out[-1]]


def deps_packages(root):
    path = os.path.join(root, "scripts/deps.sh")
    m = re.search(r'^PKGS="([^"]*)"', open(path).read(), re.M)
    if not m:
        sys.exit("check-tools: no PKGS=\"...\" list in %s" % path)
    return m.group(1).split()


def not_found(name, owners):
    """What to say of a tool that is nowhere: the installed package that has it off PATH, if any
    (offline, dpkg knows only installed packages' files; apt-file is not part of Debian's base)."""
    base = os.path.basename(name)
    elsewhere = sorted(
        "%s (%s)" % (p, ", ".join(sorted(o)))
        for p, o in owners.items()
        if os.path.basename(p) == base and re.search(r"/s?bin/|/games/", p) and p != canon(name)
    )
    what = "not found" + ("" if name.startswith("/") else " on PATH")
    if elsewhere:
        return what + "; this machine has it off PATH: %s" % "; ".join(elsewhere)
    return what + ("; no package installed here has it, so none of scripts/deps.sh's: add the "
                   "package that has it to scripts/deps.sh")


def find_on_path(name, path):
    if name.startswith("/"):
        return name if os.path.lexists(name) else None
    for d in path.split(":"):
        p = os.path.join(d or ".", name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


# ---- main ------------------------------------------------------------------------------------


def main(argv):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path, verbose = os.environ.get("PATH", ""), False
    i = 0
    while i < len(argv):
        if argv[i] == "--root" and i + 1 < len(argv):
            root, i = os.path.abspath(argv[i + 1]), i + 2
        elif argv[i] == "--path" and i + 1 < len(argv):
            path, i = argv[i + 1], i + 2
        elif argv[i] == "-v":
            verbose, i = True, i + 1
        else:
            print(__doc__.split("\n\n")[1], file=sys.stderr)
            return 2
    if not os.path.isfile(os.path.join(root, "scripts/deps.sh")):
        print("check-tools: %s has no scripts/deps.sh" % root, file=sys.stderr)
        return 2
    refs, nfiles = scan(root)
    wanted = deps_packages(root)
    pkgs, provides = installed_packages()
    roots = [(p, "scripts/deps.sh") for p in wanted] + [
        (p, "Essential") for p in sorted(pkgs) if pkgs[p]["essential"]
    ]
    why = closure(roots, pkgs, provides)
    owners = file_owners()
    problems = []
    for p in wanted:
        if p not in pkgs:
            problems.append("scripts/deps.sh lists %s, which is not installed here: "
                            "run scripts/deps.sh" % p)
    table = []
    for name in sorted(refs.tools):
        calls = refs.tools[name]
        found = find_on_path(name, path)
        if not found:
            problems.append((name, not_found(name, owners), calls))
            continue
        real = os.path.realpath(found)
        own = owners.get(canon(real), set())
        ok = sorted(p for p in own if p in why)
        if ok:
            table.append((name, real, chain(why, ok[0])))
            continue
        if own:
            what = ("%s is from %s, which scripts/deps.sh does not install (nor any package it "
                    "depends on): add %s to scripts/deps.sh"
                    % (real, ", ".join(sorted(own)), sorted(own)[0]))
        else:
            what = "%s (PATH finds %s) belongs to no Debian package" % (real, found)
        problems.append((name, what, calls))
    if verbose:
        for name, real, ch in table:
            print("%-18s %-40s %s" % (name, real, ch))
        for n in refs.notes:
            print("note: " + n)
    for p in problems:
        if isinstance(p, str):
            print("check-tools: " + p)
            continue
        name, what, calls = p
        print("check-tools: %s: %s" % (name, what))
        for f, ln in calls:
            print("    called at %s:%d" % (f, ln))
    ntools = len(refs.tools)
    if problems:
        nbad = len([p for p in problems if not isinstance(p, str)])
        print("check-tools: FAILED: %d of %d tools called in %d files are not from "
              "scripts/deps.sh's packages" % (nbad, ntools, nfiles))
        return 1
    print("check-tools: %d tools called in %d files, all from scripts/deps.sh's %d packages, "
          "their dependencies (%d packages in all) or Essential packages"
          % (ntools, nfiles, len(wanted), len(why)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
