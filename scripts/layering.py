#!/usr/bin/python3
"""layering.py - checks every #include of the project's sources against the allowed-imports
table of docs/architecture.md (between the markers "layering:" and "end of layering").

    scripts/layering.py [--root DIR]      (make layering; tests/integration/02-layering.sh)

A row of the table names files (globs, the first row that matches a file is its rule), the
project headers they may include (a folder: any header in it; a path: that header), and the
libraries whose headers they may include ("-": none). A library's headers are listed in the
second table (library, header globs). Headers of the C library and POSIX (any other <...>
header) are always allowed; a file's includes of headers in its own folder are allowed when
the row says "own". Exit status 1, with one line per include that breaks a rule.
"""
import fnmatch
import os
import re
import subprocess
import sys

BEGIN = "<!-- layering:"
END = "<!-- end of layering -->"


def cells(line):
    return [c.strip().strip("`").strip() for c in line.strip().strip("|").split("|")]


def parse_tables(text):
    a = text.find(BEGIN)
    b = text.find(END)
    if a < 0 or b < 0:
        sys.exit("layering: docs/architecture.md has no layering table")
    rows, libs, table = [], {}, None
    for line in text[a:b].splitlines():
        if not line.startswith("|"):
            table = None
            continue
        c = cells(line)
        if c[0] in ("files", "library"):
            table = c[0]
            continue
        if set(c[0]) <= set("-: "):
            continue
        if table == "files":
            files = [g.strip().strip("`") for g in c[0].split(",")]
            may = [] if c[1] in ("", "-", "—") else [m.strip().strip("`") for m in c[1].split(",")]
            lib = [] if c[2] in ("", "-", "—") else [m.strip().strip("`") for m in c[2].split(",")]
            rows.append((files, may, lib))
        elif table == "library":
            libs[c[0]] = [g.strip().strip("`<>") for g in c[1].split(",")]
    if not rows or not libs:
        sys.exit("layering: the layering tables are empty")
    return rows, libs


def rule_for(path, rows):
    for files, may, lib in rows:
        if any(fnmatch.fnmatchcase(path, g) for g in files):
            return files, may, lib
    return None


def allowed_project(src, target, may):
    """src, target: repo-relative paths."""
    for m in may:
        if m == "*":
            return True
        if m == "own":
            if os.path.dirname(target) == os.path.dirname(src):
                return True
            continue
        if target == m:
            return True
        if not m.endswith(".h") and os.path.dirname(target) == m:
            return True
    return False


def library_of(header, libs):
    for name, globs in libs.items():
        if any(fnmatch.fnmatchcase(header, g) for g in globs):
            return name
    return None


def main():
    root = "."
    args = sys.argv[1:]
    if args[:1] == ["--root"] and len(args) == 2:
        root = args[1]
    elif args:
        sys.exit("usage: layering.py [--root DIR]")
    text = open(os.path.join(root, "docs/architecture.md")).read()
    rows, libs = parse_tables(text)
    try:
        files = subprocess.run(["git", "-C", root, "ls-files", "--cached", "--others",
                                "--exclude-standard", "*.c", "*.h"], check=True,
                               capture_output=True, text=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        files = []
        for d, _, fs in os.walk(root):
            if "/build" in d or "/.git" in d:
                continue
            files += [os.path.relpath(os.path.join(d, f), root) for f in fs
                      if f.endswith((".c", ".h"))]
    files = sorted(f for f in files if os.path.exists(os.path.join(root, f)))
    bad = 0
    inc = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
    for f in files:
        rule = rule_for(f, rows)
        if rule is None:
            print(f"layering: {f}: no row of the table names it")
            bad += 1
            continue
        _, may, lib = rule
        for n, line in enumerate(open(os.path.join(root, f), errors="replace"), 1):
            m = inc.match(line)
            if not m:
                continue
            kind, name = m.groups()
            if kind == '"':
                target = os.path.normpath(os.path.join(os.path.dirname(f), name))
                if not allowed_project(f, target, may):
                    print(f"layering: {f}:{n}: includes {target}, which its row does not allow")
                    bad += 1
            else:
                which = library_of(name, libs)
                if which and "*" not in lib and which not in lib:
                    print(f"layering: {f}:{n}: includes <{name}> ({which}), which its row does "
                          f"not allow")
                    bad += 1
    if bad:
        print(f"layering: FAILED: {bad} include(s) break docs/architecture.md's table")
        return 1
    print(f"layering: {len(files)} files, every include as docs/architecture.md allows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
