"""toolscan.py - finds the external commands that the project's tests, scripts, benchmarks and
Makefile call, for scripts/check-tools.py (which says what counts as a call; read its header).
scan(root) returns a Refs: each tool (a name looked up on PATH, or an absolute path) with the
file:line of every call.
"""

import ast
import glob
import os
import re
import subprocess
from collections import defaultdict

import shparse

BIN_PATH = re.compile(r"^/(usr/)?(local/)?s?bin/[A-Za-z0-9_.+-]+$")
PLACEHOLDER = re.compile(r"__[A-Z0-9]+__")
SHELLS = ("sh", "bash", "dash")


def bash_words(flag):
    out = subprocess.run(["bash", "-c", "compgen " + flag], capture_output=True, text=True)
    return set(out.stdout.split())


BUILTINS = bash_words("-b")
KEYWORDS = bash_words("-k")


class Refs:
    """Every tool reference: name (looked up on PATH) or absolute path -> [(file, line)]; and
    what could not be resolved (-v shows it)."""

    def __init__(self):
        self.tools = defaultdict(list)
        self.notes = []

    def add(self, name, where):
        if where not in self.tools[name]:
            self.tools[name].append(where)

    def note(self, where, what):
        self.notes.append("%s:%d: %s" % (where[0], where[1], what))


# ---- shell -----------------------------------------------------------------------------------

# The syntax of the commands that run another command: options taking a value, positional
# arguments before the command. (Parser rules, not a list of allowed tools.)
WRAPPERS = {
    "env": ("uCS", 0),
    "timeout": ("sk", 1),
    "nice": ("n", 0),
    "ionice": ("cnp", 0),
    "nohup": ("", 0),
    "setsid": ("", 0),
    "stdbuf": ("ioe", 0),
    "taskset": ("", 1),
    "chrt": ("", 1),
    "flock": ("wEn", 1),
    "sudo": ("ugChpTrtUD", 0),
    "runuser": ("ugGl", 0),
    "unshare": ("", 0),
    "nsenter": ("tS", 0),
    "strace": ("oeEpPsSuIXba", 0),
    "xargs": ("IdaELlnPsi", 0),
    "time": ("fo", 0),
    "watch": ("nd", 0),
}


class Shell:
    """Resolves the commands of parsed shell scripts into tool references."""

    def __init__(self, refs, scripts):
        self.refs = refs
        self.scripts = scripts  # relpath -> shparse.Script
        self.visible = {}  # relpath -> set of function names it sees
        self.fninfo = {}  # function name -> dict(runs, evals, checks, shift, opts)
        for rel, s in scripts.items():
            self._infer(s)

    def _infer(self, s):
        for name in s.funcs:
            body = [c for c in s.cmds if c.func == name]
            info = dict(runs=False, evals=False, checks=False, shift=0, opts={})
            for c in body:
                w0, args = c.words[0], c.words[1:]
                if w0.var in ("@", "*"):
                    info["runs"] = True
                if w0.lit == "eval" and any(a.var in ("@", "*") for a in args):
                    info["evals"] = True
                if w0.lit in ("type", "command", "hash") and any(
                    a.var and any(w is not None and w.var == "@" for w in s.for_vars.get(a.var, []))
                    for a in args
                ):
                    info["checks"] = True
                if w0.lit == "shift":
                    n = int(args[0].lit) if args and (args[0].lit or "").isdigit() else 1
                    if c.case_pats is None:
                        info["shift"] += n
                    else:
                        for p in c.case_pats:
                            if p.startswith("-"):
                                info["opts"][p] = n - 1
            self.fninfo.setdefault(name, info)

    def _sourced(self, rel, seen):
        """rel and the scanned scripts it sources, recursively."""
        if rel in seen or rel not in self.scripts:
            return seen
        seen.add(rel)
        for c in self.scripts[rel].cmds:
            if c.words[0].lit in (".", "source") and len(c.words) > 1:
                base = os.path.basename(c.words[1].val.rstrip('"'))
                for other in self.scripts:
                    if os.path.basename(other) == base:
                        self._sourced(other, seen)
        return seen

    def scope(self, rel):
        """The scripts whose functions and variables rel sees: those it sources, and for a
        library (lib-node.sh), those sourced next to it by the scripts that source it."""
        if rel not in self.visible:
            sc = self._sourced(rel, set())
            for other in self.scripts:
                if rel in self._sourced(other, set()) and other != rel:
                    sc |= self._sourced(other, set()) - {other}
            self.visible[rel] = sc
        return self.visible[rel]

    def funcs_of(self, rel):
        fs = set()
        for r in self.scope(rel):
            fs |= self.scripts[r].funcs
        return fs

    def _assigns(self, rel, var):
        """The values given to var: in rel itself if it assigns it, else in its scope."""
        own = [(rel, w) for w in self.scripts[rel].assigns.get(var, []) if w is not None]
        if own:
            return own
        return [(r, w) for r in sorted(self.scope(rel))
                for w in self.scripts[r].assigns.get(var, []) if w is not None]

    def var_path(self, rel, var):
        """A variable used as a command: its value if every assignment is the same literal."""
        vals = {w.lit for _, w in self._assigns(rel, var)}
        return vals.pop() if len(vals) == 1 and None not in vals else None

    def script(self, rel):
        funcs = self.funcs_of(rel)
        for c in self.scripts[rel].cmds:
            self.command(c.words, c.heredocs, rel, funcs, 0)

    def text(self, text, line, rel, funcs, depth):
        """A string that a shell runs (eval, sh -c, a C system() call, a make recipe)."""
        for c in shparse.parse(text, line).cmds:
            self.command(c.words, c.heredocs, rel, funcs, depth + 1)

    def command(self, words, heredocs, rel, funcs, depth):
        if not words or depth > 10:
            return
        w, args = words[0], words[1:]
        where = (rel, w.line)
        name = w.lit
        if name is None:
            if w.var and w.var not in ("@", "*"):
                name = self.var_path(rel, w.var)
            if name is None:
                if w.var not in ("@", "*") and not PLACEHOLDER.search(w.raw):
                    self.refs.note(where, "not checked (not a literal command): %s" % w.raw)
                return
        if PLACEHOLDER.search(name) or not name:
            return
        if "$" in name or "`" in name:  # an expansion of the string's own context (eval "'$X'")
            self.refs.note(where, "not checked (not a literal command): %s" % name)
            return
        if name in KEYWORDS:
            return self.command(args, heredocs, rel, funcs, depth)
        if name in BUILTINS:
            return self.builtin(name, args, heredocs, rel, funcs, depth)
        if name in funcs:
            return self.function(name, args, heredocs, rel, funcs, depth)
        if "/" in name and not name.startswith("/"):
            return  # the project's own program
        self.refs.add(name, where)
        base = os.path.basename(name)
        if base == "chroot":
            return  # what it runs is the image's
        if base.startswith("python"):
            for h in heredocs:
                python_code(h.body, h.line, rel, self.refs, self)
            for i, a in enumerate(args[:-1]):
                if a.lit == "-c":
                    python_code(args[i + 1].val, args[i + 1].line, rel, self.refs, self)
                    break
        elif base in SHELLS:
            for i, a in enumerate(args[:-1]):
                if a.lit == "-c" or (a.lit or "").startswith("-") and a.lit.endswith("c"):
                    self.text(args[i + 1].val, args[i + 1].line, rel, set(), depth)
                    break
        elif base == "find":
            for i, a in enumerate(args):
                if a.lit in ("-exec", "-execdir", "-ok", "-okdir"):
                    rest = args[i + 1 :]
                    end = next((j for j, x in enumerate(rest) if x.val in (";", "+")), len(rest))
                    self.command(rest[:end], [], rel, funcs, depth + 1)
        elif base == "ip" and [a.lit for a in args[:2]] == ["netns", "exec"]:
            self.command(args[3:], heredocs, rel, funcs, depth + 1)
        elif base in WRAPPERS:
            valopts, npos = WRAPPERS[base]
            i = 0
            while i < len(args):
                a = args[i].val
                if a == "--":
                    i += 1
                    break
                if a.startswith("--"):
                    i += 1
                    continue
                if a.startswith("-") and len(a) > 1:
                    i += 2 if a[-1] in valopts and len(a) == 2 else 1
                    continue
                if base == "env" and "=" in a:
                    i += 1
                    continue
                break
            self.command(args[i + npos :], heredocs, rel, funcs, depth + 1)

    def builtin(self, name, args, heredocs, rel, funcs, depth):
        lits = [a.lit for a in args]
        if name == "command":
            if lits[:1] in (["-v"], ["-V"]):
                for a in args[1:]:
                    self.tool_name(a, rel, funcs)
            else:
                # command NAME: never a function (lib.sh's skopeo() calls the real one so)
                args = args[1:] if lits[:1] == ["-p"] else args
                self.command(args, heredocs, rel, funcs - {args[0].lit} if args else funcs, depth)
        elif name == "exec":
            while args and (args[0].lit or "").startswith("-"):
                args = args[2:] if args[0].lit == "-a" else args[1:]
            self.command(args, heredocs, rel, funcs, depth)
        elif name in ("type", "hash") and any(x in ("-P", "-p", "-a", "-t") for x in lits) or (
            name == "hash" and args
        ):
            for a in args:
                if not (a.lit or "").startswith("-"):
                    self.tool_name(a, rel, funcs)
        elif name in ("[", "test") and len(args) > 1 and args[0].lit == "-x":
            if args[1].lit and BIN_PATH.match(args[1].lit):  # [ -x /bin/busybox ]: a program
                self.refs.add(args[1].lit, (rel, args[1].line))
        elif name == "eval":
            self.eval_words(args, rel, funcs, depth)
        elif name == "trap" and args and not (args[0].lit or "").startswith("-"):
            self.text(args[0].val, args[0].line, rel, funcs, depth)

    def eval_words(self, args, rel, funcs, depth):
        if len(args) == 1 and args[0].var and args[0].var not in ("@", "*"):
            # eval "$cmd": each string the variable is given (an assignment or a for list)
            for r, v in self._assigns(rel, args[0].var):
                self.text(v.val, v.line, r, funcs, depth)
            return
        if args:
            self.text(" ".join(a.val for a in args), args[0].line, rel, funcs, depth)

    def tool_name(self, a, rel, funcs):
        if a.lit and a.lit not in BUILTINS and a.lit not in funcs and a.lit not in KEYWORDS:
            if "/" not in a.lit or a.lit.startswith("/"):
                self.refs.add(a.lit, (rel, a.line))

    def function(self, name, args, heredocs, rel, funcs, depth):
        info = self.fninfo.get(name)
        if not info:
            return
        if info["checks"]:
            for a in args:
                self.tool_name(a, rel, funcs)
        if not (info["runs"] or info["evals"]):
            return
        rest = args[info["shift"] :]
        while rest and rest[0].lit in info["opts"]:
            rest = rest[1 + info["opts"][rest[0].lit] :]
        if info["runs"]:
            self.command(rest, heredocs, rel, funcs, depth + 1)
        else:
            self.eval_words(rest, rel, funcs, depth)


# ---- python ----------------------------------------------------------------------------------

PY_RUN = {"subprocess." + f for f in ("run", "Popen", "call", "check_call", "check_output")}
PY_SHELL = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"}
PY_EXEC = {"os.exec" + s for s in ("lp", "lpe", "vp", "vpe")} | {"os.spawnlp", "os.spawnvp"}


def _dotted(node, aliases):
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value, aliases)
        return base + "." + node.attr if base else None
    return None


def python_code(code, line0, rel, refs, shell):
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("os", "subprocess", "shutil"):
            for a in node.names:
                aliases[a.asname or a.name] = node.module + "." + a.name
    for node in ast.walk(tree):
        where = (rel, line0 + getattr(node, "lineno", 1) - 1)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if BIN_PATH.match(node.value):
                refs.add(node.value, where)
        if not isinstance(node, ast.Call) or not node.args:
            continue
        fn = _dotted(node.func, aliases)
        a0 = node.args[0]
        if fn in ("os.spawnlp", "os.spawnvp") and len(node.args) > 1:
            a0 = node.args[1]  # after the mode
        shell_kw = any(k.arg == "shell" and getattr(k.value, "value", False) for k in node.keywords)
        if isinstance(a0, (ast.List, ast.Tuple)) and a0.elts:
            a0 = a0.elts[0]
        s = a0.value if isinstance(a0, ast.Constant) and isinstance(a0.value, str) else None
        if fn in PY_SHELL or fn in PY_RUN and shell_kw:
            if s is not None:
                shell.text(s, where[1], rel, set(), 0)
            else:
                refs.note(where, "not checked (not a literal command): %s(...)" % fn)
        elif fn in PY_RUN or fn in PY_EXEC or fn == "shutil.which":
            if s is not None:
                if "/" not in s or s.startswith("/"):
                    refs.add(s, where)
            else:
                refs.note(where, "not checked (not a literal command): %s(...)" % fn)


# ---- C ---------------------------------------------------------------------------------------

C_TOKEN = re.compile(
    r'(?P<ws>\s+)|(?P<cm>//[^\n]*|/\*.*?\*/)|(?P<pp>^[ \t]*#(?:\\\n|[^\n])*)'
    r'|(?P<str>"(?:\\.|[^"\\\n])*")|(?P<chr>\'(?:\\.|[^\'\\\n])*\')'
    r"|(?P<id>[A-Za-z_]\w*)|(?P<num>\d[\w.]*)|(?P<p>\.\.\.|->|[^\s\w])",
    re.S | re.M,
)
C_RUN_SHELL = {"system": 0, "popen": 0}
C_RUN_PROG = {"execlp": 0, "execvp": 0, "execvpe": 0, "execl": 0, "execv": 0, "execle": 0}
C_FORMAT = re.compile(r"%%|%[-+ #0]*(\*|\d+)?(\.(\*|\d+))?(hh|h|ll|l|z|j|t|L)?([diouxXeEfgGcspn])")


def c_tokens(text):
    toks, line, pp = [], 1, []
    for m in C_TOKEN.finditer(text):
        k, s = m.lastgroup, m.group()
        if k == "pp":
            pp.append((s, line))
        elif k == "str":
            body = s[1:-1].encode("latin-1", "replace").decode("unicode_escape", "replace")
            toks.append(("str", body, line))
        elif k not in ("ws", "cm"):
            toks.append((k, s, line))
        line += s.count("\n")
    return toks, pp


def c_split_args(toks, i):
    """toks[i] is '(': returns ([arg token lists], index after ')')."""
    args, cur, depth = [], [], 0
    i += 1
    while i < len(toks):
        k, s, _ = toks[i]
        if k == "p" and s in "([{":
            depth += 1
        elif k == "p" and s in ")]}":
            if depth == 0:
                if cur or args:
                    args.append(cur)
                return args, i + 1
            depth -= 1
        elif k == "p" and s == "," and depth == 0:
            args.append(cur)
            cur = []
            i += 1
            continue
        cur.append(toks[i])
        i += 1
    return args, i


class CFile:
    """The functions and macros of one C file, and the strings its shell calls run."""

    def __init__(self, rel, text, macros):
        self.rel = rel
        toks, pp = c_tokens(text)
        self.macros = macros  # NAME -> string literal, shared with the headers
        self.fns = []  # (name, params, body tokens, is_macro)
        for s, line in pp:
            s = s.replace("\\\n", " ")
            m = re.match(r'\s*#\s*define\s+(\w+)\s+"((?:\\.|[^"\\])*)"\s*$', s)
            if m:
                macros[m.group(1)] = m.group(2).encode().decode("unicode_escape")
                continue
            m = re.match(r"\s*#\s*define\s+(\w+)\(([^)]*)\)(.*)", s, re.S)
            if m:
                params = [p.strip() for p in m.group(2).split(",")]
                params = ["__VA_ARGS__" if p == "..." else p for p in params]
                body = [(k, v, line) for k, v, _ in c_tokens(m.group(3))[0]]
                self.fns.append((m.group(1), params, body, True))
        depth, i = 0, 0
        while i < len(toks):
            k, s, _ = toks[i]
            if k == "p" and s == "{":
                depth += 1
            elif k == "p" and s == "}":
                depth -= 1
            elif depth == 0 and k == "id" and i + 1 < len(toks) and toks[i + 1][1] == "(":
                args, j = c_split_args(toks, i + 1)
                if j < len(toks) and toks[j][1] == "{":
                    params = []
                    for a in args:
                        ids = [t[1] for t in a if t[0] == "id"]
                        if a and a[-1][1] == "]":
                            ids = [t[1] for t in a[: [t[1] for t in a].index("[")] if t[0] == "id"]
                        params.append(ids[-1] if ids else "...")
                    end, d = j, 0
                    while end < len(toks):
                        d += toks[end][1] == "{" and toks[end][0] == "p"
                        d -= toks[end][1] == "}" and toks[end][0] == "p"
                        end += 1
                        if d == 0:
                            break
                    self.fns.append((s, params, toks[j:end], False))
                    i = end
                    continue
            i += 1
        self.toplevel = toks

    def strings(self, expr, fn):
        """What an argument expression can be: a list of strings, where __P<k>__ stands for the
        enclosing function's k-th parameter and __ARG__ for anything else."""
        name, params, body, _ = fn
        ids = [t for t in expr if t[0] in ("id", "str")]
        if len(expr) == 1 and expr[0][0] == "id":
            v = expr[0][1]
            if v in params:
                return ["__P%d__" % params.index(v)]
            if v in self.macros:
                return [self.macros[v]]
            return self.variable(v, fn) or ["__ARG__"]
        if len(expr) >= 2 and expr[0][0] == "id" and expr[1][1] == "[":
            return self.array(expr[0][1], fn) or ["__ARG__"]
        groups, cur = [], []
        for t in expr:
            if t[0] == "str" or t[0] == "id" and t[1] in self.macros:
                cur.append(t[1] if t[0] == "str" else self.macros[t[1]])
            elif cur:
                groups.append("".join(cur))
                cur = []
        if cur:
            groups.append("".join(cur))
        return groups or (["__ARG__"] if ids else [])

    def _scopes(self, fn):
        return [fn[2], self.toplevel]

    def variable(self, v, fn):
        """A buffer filled by snprintf(v, size, FMT, ...), or char *v = "...": its strings."""
        for toks in self._scopes(fn):
            for i, t in enumerate(toks):
                if t[0] == "id" and t[1] in ("snprintf", "sprintf", "vsnprintf") and i + 1 < len(
                    toks
                ):
                    args, _ = c_split_args(toks, i + 1)
                    if args and [x[1] for x in args[0]] == [v]:
                        k = 1 if t[1] == "sprintf" else 2
                        if t[1] == "vsnprintf":
                            return self.strings(args[k], fn)
                        return self.format(args[k], args[k + 1 :], fn)
                if t == ("id", v, t[2]) and i + 2 < len(toks) and toks[i + 1][1] == "=":
                    if toks[i + 2][0] == "str":
                        return [toks[i + 2][1]]
        return None

    def array(self, v, fn):
        for toks in self._scopes(fn):
            for i, t in enumerate(toks):
                if t[0] == "id" and t[1] == v and i + 3 < len(toks) and toks[i + 1][1] == "[":
                    j = i + 1
                    while j < len(toks) and toks[j][1] != "]":
                        j += 1
                    if j + 2 < len(toks) and toks[j + 1][1] == "=" and toks[j + 2][1] == "{":
                        out = []
                        while j < len(toks) and toks[j][1] != "}":
                            if toks[j][0] == "str":
                                out.append(toks[j][1])
                            j += 1
                        return out
        return None

    def format(self, fmt_expr, rest, fn):
        out = []
        for fmt in self.strings(fmt_expr, fn):
            vals, k = [], 0

            def sub(m):
                nonlocal k
                if m.group() == "%%":
                    return "%"
                k += (m.group(1) == "*") + (m.group(3) == "*")
                arg = rest[k] if k < len(rest) else []
                k += 1
                if m.group(5) != "s":
                    return "0"
                got = self.strings(arg, fn) or ["__ARG__"]
                vals.append(got)
                return "\x00%d\x00" % (len(vals) - 1)

            skel = C_FORMAT.sub(sub, fmt)
            combos = [skel]
            for n, choices in enumerate(vals):
                combos = [c.replace("\x00%d\x00" % n, ch) for c in combos for ch in choices][:32]
            out += combos
        return out

    def calls(self, body):
        for i, t in enumerate(body):
            if t[0] == "id" and i + 1 < len(body) and body[i + 1][1] == "(":
                args, _ = c_split_args(body, i + 1)
                yield t, args


def c_scan(cfiles, shell, refs):
    shell_fns = dict(C_RUN_SHELL)  # function -> index of its command-string argument
    prog_fns = dict(C_RUN_PROG)

    def cmd_strings(cf, fn, t, args):
        if t[1] in shell_fns:
            k = shell_fns[t[1]]
            if k >= len(args):
                return []
            if t[1] not in C_RUN_SHELL and len(args) > k + 1:
                return cf.format(args[k], args[k + 1 :], fn)
            return cf.strings(args[k], fn)
        return []

    changed = True
    while changed:  # the helpers that hand their parameter to a shell, to a fixpoint
        changed = False
        for cf in cfiles:
            for fn in cf.fns:
                if fn[0] in shell_fns or fn[0] in prog_fns:
                    continue
                for t, args in cf.calls(fn[2]):
                    for s in cmd_strings(cf, fn, t, args):
                        m = re.match(r"\s*(?:exec\s+)?__P(\d+)__", s)
                        if m:
                            shell_fns[fn[0]] = int(m.group(1))
                            changed = True
                    if t[1] in prog_fns and args:
                        m = cf.strings(args[prog_fns[t[1]]], fn)
                        if m and m[0].startswith("__P"):
                            prog_fns[fn[0]] = int(m[0][3:-2])
                            changed = True
                    if changed:
                        break
    for cf in cfiles:
        for fn in cf.fns:
            if fn[3]:
                continue
            for t, args in cf.calls(fn[2]):
                for s in cmd_strings(cf, fn, t, args):
                    shell.text(s, t[2], cf.rel, set(), 0)
                if t[1] in prog_fns and prog_fns[t[1]] < len(args):
                    for s in cf.strings(args[prog_fns[t[1]]], fn):
                        if not PLACEHOLDER.search(s) and ("/" not in s or s.startswith("/")):
                            refs.add(s, (cf.rel, t[2]))


# ---- Makefile --------------------------------------------------------------------------------


def make_defaults():
    try:
        out = subprocess.run(["make", "-p", "-f", "/dev/null"], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL).stdout
    except OSError:
        return {}
    d = {}
    for ln in out.splitlines():
        m = re.match(r"^([A-Za-z_][\w]*)\s*:?=\s*(.*)$", ln)
        if m and m.group(1) not in d:
            d[m.group(1)] = m.group(2)
    return d


def make_scan(rel, text, shell):
    lines, buf, start = [], "", 0
    for n, ln in enumerate(text.split("\n"), 1):
        if not buf:
            start = n
        if ln.endswith("\\"):
            buf += ln[:-1] + " "
            continue
        lines.append((start, buf + ln))
        buf = ""
    mvars, defaults = {}, make_defaults()
    for _, ln in lines:
        m = re.match(r"^([A-Za-z_]\w*)\s*(\?|:|::|\+)?=\s*(.*)$", ln)
        if m and not ln.startswith("\t"):
            mvars.setdefault(m.group(1), m.group(3))
    shell_calls = []

    def expand(s, line, depth=0, record=True):
        if depth > 10:
            return s
        out, i = [], 0
        while i < len(s):
            c = s[i]
            if c != "$" or i + 1 >= len(s):
                out.append(c)
                i += 1
                continue
            n = s[i + 1]
            if n == "$":
                out.append("$")
                i += 2
                continue
            if n not in "({":
                out.append("__AUTO__")
                i += 2
                continue
            close, d, j = ")" if n == "(" else "}", 1, i + 2
            while j < len(s) and d:
                d += s[j] == n
                d -= s[j] == close
                j += 1
            inner = s[i + 2 : j - 1]
            i = j
            if inner.startswith("shell "):
                if record:  # where it is written, not at each use of the variable
                    shell_calls.append((expand(inner[6:], line, depth + 1, False), line))
                out.append("__SHELL__")
            elif re.fullmatch(r"[A-Za-z_]\w*", inner) and (inner in mvars or inner in defaults):
                val = mvars.get(inner, defaults.get(inner, ""))
                out.append(expand(val, line, depth + 1, False))
            elif re.fullmatch(r"[A-Za-z_]\w*", inner):
                out.append("")
            else:
                for k in re.finditer(r"\$\(shell ", inner):  # $(shell) nested in a function
                    expand(inner[k.start() :], line, depth + 1, record)
                out.append("__AUTO__")
        return "".join(out)

    for line, ln in lines:
        if ln.startswith("\t"):
            cmd = expand(ln[1:].lstrip("@-+ \t"), line).lstrip("@-+")
            shell.text(cmd, line, rel, set(), 0)
        else:
            expand(ln, line)
    for cmd, line in shell_calls:
        shell.text(cmd, line, rel, set(), 0)


# ---- the tree --------------------------------------------------------------------------------


def scan(root):
    refs = Refs()
    sh_files, py_files, c_files = [], [], []
    for pat in ("tests/integration/*.sh", "scripts/*.sh", "bench/*.sh", ".ci/run"):
        sh_files += sorted(glob.glob(os.path.join(root, pat)))
    for pat in ("tests/integration/*.py", "bench/*.py", "scripts/*.py"):
        py_files += sorted(glob.glob(os.path.join(root, pat)))
    for pat in ("tests/unit/*.[ch]", "tests/*.c", "bench/*.[ch]", "cmd/*.c"):
        c_files += sorted(glob.glob(os.path.join(root, pat)))
    rel = lambda f: os.path.relpath(f, root)  # noqa: E731
    scripts = {rel(f): shparse.parse(open(f, errors="replace").read()) for f in sh_files}
    shell = Shell(refs, scripts)
    for r in scripts:
        shell.script(r)
    for f in py_files:
        python_code(open(f, errors="replace").read(), 1, rel(f), refs, shell)
    macros = {}
    cfiles = [CFile(rel(f), open(f, errors="replace").read(), macros) for f in c_files]
    c_scan(cfiles, shell, refs)
    mk = os.path.join(root, "Makefile")
    if os.path.exists(mk):
        make_scan("Makefile", open(mk).read(), shell)
    for f in sh_files + py_files:
        first = open(f, errors="replace").readline()
        if first.startswith("#!") and os.access(f, os.X_OK):
            w = first[2:].split()
            if w:
                refs.add(w[0], (rel(f), 1))
                if os.path.basename(w[0]) == "env" and len(w) > 1:
                    refs.add(w[1], (rel(f), 1))
    nfiles = len(sh_files) + len(py_files) + len(c_files) + os.path.exists(mk)
    return refs, nfiles
