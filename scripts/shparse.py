"""shparse.py - finds the simple commands of a bash (or sh) script, for scripts/check-tools.py.

Not a full bash parser: a lexer for words (quotes, escapes, ${...}, $(...), `...`, $((...)),
<(...)), operators, redirections and here-documents, and a parser that knows where a command
starts (after | || && ; & ( ) { ! if then else elif while until do time, a case pattern's ")",
and after variable assignments) and what is not a command (case patterns and subjects, for
lists, [[ ]] and (( )) bodies, function names). Command substitutions, process substitutions
and unquoted here-document bodies are parsed as scripts of their own. Every simple command comes
out as a Cmd: its words, line, the function it is defined in, the case branch it sits in, and
the here-documents fed to it. What words *mean* (builtins, wrappers such as `timeout 5 CMD`) is
check-tools.py's business.
"""

import re

ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")
VARWORD = re.compile(r'^"?\$(?:\{([A-Za-z_][A-Za-z0-9_]*|[@*])\}|([A-Za-z_][A-Za-z0-9_]*|[@*]))"?$')
REDIR = re.compile(r"(\d+|\{[A-Za-z_]\w*\})?(<<<|<<-|<<|<>|<&|>&|>>|>\||&>>|&>|<|>)")
OPS = (";;&", ";;", ";&", "||", "|&", "&&", "|", "&", ";", "(", ")")
META = set("|&;()<> \t\n")


class Word:
    """One shell word. val: the word with quotes removed and expansions kept as written;
    lit: val when the word has no expansion (else None); var: NAME when the word is just $NAME
    or "${NAME}" (also @ and *)."""

    def __init__(self, raw, val, has_exp, line):
        self.raw, self.val, self.line = raw, val, line
        self.lit = None if has_exp else val
        m = VARWORD.match(raw)
        self.var = (m.group(1) or m.group(2)) if m else None

    def __repr__(self):
        return "Word(%r)" % self.raw


class Heredoc:
    def __init__(self, quoted):
        self.quoted, self.body, self.line = quoted, "", 0


class Cmd:
    """A simple command: words[0] is in command position (assignments before it are dropped)."""

    def __init__(self, words, line, func, case_pats, heredocs, depth):
        self.words, self.line, self.func = words, line, func
        self.case_pats = case_pats  # the patterns of the case branch it is in, or None
        self.heredocs = heredocs
        self.depth = depth  # nesting of compound commands inside its function


class Script:
    """The result of parsing one text: cmds (every simple command, substitutions included),
    funcs (function names defined), assigns (NAME -> [Word] assigned, for-list values too)."""

    def __init__(self):
        self.cmds, self.funcs, self.assigns, self.for_vars = [], set(), {}, {}


class _Lexer:
    def __init__(self, text, pos, line, out, ctx):
        self.t, self.i, self.line, self.out, self.ctx = text, pos, line, out, ctx
        self.pending = []  # (delimiter, strip tabs, Heredoc)

    def _c(self, k=0):
        j = self.i + k
        return self.t[j] if j < len(self.t) else ""

    def _adv(self, n=1):
        self.line += self.t.count("\n", self.i, self.i + n)
        self.i += n

    def _sub(self, stop_paren):
        """Parses a script from here (a command or process substitution) up to its ')'."""
        p = _Parser(self.t, self.i, self.line, self.out, self.ctx, stop_paren)
        p.run()
        self.i, self.line = p.lx.i, p.lx.line

    def _sub_text(self, text, line):
        _Parser(text, 0, line, self.out, self.ctx, False).run()

    def _arith(self):
        """Skips (( ... )) or $(( ... )) content up to the closing '))'; $( ) inside is parsed."""
        depth = 0
        while self.i < len(self.t):
            c = self._c()
            if c == "$" and self._c(1) == "(" and self._c(2) != "(":
                self._adv(2)
                self._sub(True)
                continue
            if c == "(":
                depth += 1
            elif c == ")":
                if depth == 0 and self._c(1) == ")":
                    self._adv(2)
                    return
                depth -= 1
            self._adv()

    def _dollar(self):
        """At '$': reads one expansion; returns True if it was one."""
        n = self._c(1)
        if n == "(":
            if self._c(2) == "(":
                self._adv(3)
                self._arith()
            else:
                self._adv(2)
                self._sub(True)
            return True
        if n == "{":
            self._adv(2)
            depth = 1
            while self.i < len(self.t) and depth:
                c = self._c()
                if c == "\\":
                    self._adv(2)
                    continue
                if c == "'":
                    self._adv()
                    while self.i < len(self.t) and self._c() != "'":
                        self._adv()
                elif c == '"':
                    self._dquote([])
                    continue
                elif c == "$" and self._dollar():
                    continue
                elif c == "`":
                    self._backtick()
                    continue
                elif c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                self._adv()
            return True
        if n and (n.isalnum() or n in "_@*#?$!-"):
            self._adv(2)
            if n.isalpha() or n == "_":
                while self._c() and (self._c().isalnum() or self._c() == "_"):
                    self._adv()
            return True
        return False

    def _backtick(self):
        line = self.line
        self._adv()
        s = []
        while self.i < len(self.t) and self._c() != "`":
            if self._c() == "\\" and self._c(1) in "`\\$":
                s.append(self._c(1))
                self._adv(2)
                continue
            s.append(self._c())
            self._adv()
        self._adv()
        self._sub_text("".join(s), line)

    def _dquote(self, val):
        """At '"': reads to the closing quote; appends the literal text to val; returns whether
        an expansion was met."""
        exp = False
        self._adv()
        while self.i < len(self.t) and self._c() != '"':
            c = self._c()
            if c == "\\" and self._c(1) in '$`"\\\n':
                if self._c(1) != "\n":
                    val.append(self._c(1))
                self._adv(2)
                continue
            if c == "$":
                st = self.i
                if self._dollar():
                    val.append(self.t[st : self.i])
                    exp = True
                    continue
            if c == "`":
                st = self.i
                self._backtick()
                val.append(self.t[st : self.i])
                exp = True
                continue
            val.append(c)
            self._adv()
        self._adv()
        return exp

    def word(self):
        start, line, val, exp = self.i, self.line, [], False
        if self._c() in "<>" and self._c(1) == "(":  # process substitution
            self._adv(2)
            self._sub(True)
            return Word(self.t[start : self.i], self.t[start : self.i], True, line)
        while self.i < len(self.t) and self._c() not in META:
            c = self._c()
            if c == "\\":
                if self._c(1) != "\n":
                    val.append(self._c(1))
                self._adv(2)
            elif c == "'":
                j = self.t.find("'", self.i + 1)
                j = len(self.t) if j < 0 else j
                val.append(self.t[self.i + 1 : j])
                self._adv(j + 1 - self.i)
            elif c == '"':
                exp |= self._dquote(val)
            elif c == "$" and self._c(1) == "'":
                self._adv(2)
                s = []
                while self.i < len(self.t) and self._c() != "'":
                    if self._c() == "\\":
                        s.append(self._c())
                        self._adv()
                    s.append(self._c())
                    self._adv()
                self._adv()
                val.append("".join(s).encode().decode("unicode_escape", "replace"))
            elif c == "$":
                st = self.i
                if self._dollar():
                    val.append(self.t[st : self.i])
                    exp = True
                else:
                    val.append(c)
                    self._adv()
            elif c == "`":
                st = self.i
                self._backtick()
                val.append(self.t[st : self.i])
                exp = True
            elif c in "<>" and self._c(1) == "(":
                st = self.i
                self._adv(2)
                self._sub(True)
                val.append(self.t[st : self.i])
                exp = True
            else:
                val.append(c)
                self._adv()
            if self._c() == "(" and ASSIGN.fullmatch(self.t[start : self.i]):
                self._array()  # NAME=( words ): the words are no command
                return Word(self.t[start : self.i], self.t[start : self.i], True, line)
        return Word(self.t[start : self.i], "".join(val), exp, line)

    def _array(self):
        self._adv()
        while self.i < len(self.t) and self._c() != ")":
            c = self._c()
            if c in " \t\n" or c == "\\" and self._c(1) == "\n":
                self._adv(2 if c == "\\" else 1)
            elif c == "#":
                while self.i < len(self.t) and self._c() != "\n":
                    self._adv()
            elif c in META:
                self._adv()
            else:
                self.word()
        self._adv()

    def _heredocs(self):
        for delim, strip, hd in self.pending:
            hd.line = self.line
            body = []
            while self.i < len(self.t):
                j = self.t.find("\n", self.i)
                j = len(self.t) if j < 0 else j
                ln = self.t[self.i : j]
                self._adv(j + 1 - self.i if j < len(self.t) else j - self.i)
                if (ln.lstrip("\t") if strip else ln) == delim:
                    break
                body.append(ln + "\n")
            hd.body = "".join(body)
            if not hd.quoted:  # expansions in the body run
                _Lexer(hd.body, 0, hd.line, self.out, self.ctx)._expansions()
        self.pending = []

    def _expansions(self):
        while self.i < len(self.t):
            c = self._c()
            if c == "\\":
                self._adv(2)
            elif c == "$":
                if not self._dollar():
                    self._adv()
            elif c == "`":
                self._backtick()
            else:
                self._adv()

    def next(self, cmd_pos, arith_ok=False):
        """The next token: ('word', Word) ('op', s) ('nl',) ('redir', op) ('skip',) ('eof',).
        At a command position, (( )) and [[ ]] come out whole as ('skip',)."""
        while True:
            c = self._c()
            if c in (" ", "\t"):
                self._adv()
            elif c == "\\" and self._c(1) == "\n":
                self._adv(2)
            elif c == "#":
                while self.i < len(self.t) and self._c() != "\n":
                    self._adv()
            else:
                break
        if self.i >= len(self.t):
            return ("eof",)
        if c == "\n":
            self._adv()
            self._heredocs()
            return ("nl",)
        if (cmd_pos or arith_ok) and self.t.startswith("((", self.i):
            self._adv(2)
            self._arith()
            return ("skip",)
        if cmd_pos and self.t.startswith("[[", self.i) and self._c(2) in " \t\n":
            self._adv(2)
            while self.i < len(self.t):
                while self._c() in (" ", "\t", "\n") or self._c() == "\\" and self._c(1) == "\n":
                    self._adv(2 if self._c() == "\\" else 1)
                if self.t.startswith("]]", self.i):
                    self._adv(2)
                    break
                if self._c() in META:
                    self._adv()
                else:
                    self.word()
            return ("skip",)
        if c in "<>" and self._c(1) == "(":
            return ("word", self.word())
        m = REDIR.match(self.t, self.i)
        if m:
            self._adv(m.end() - self.i)
            return ("redir", m.group(2))
        for op in OPS:
            if self.t.startswith(op, self.i):
                self._adv(len(op))
                return ("op", op)
        return ("word", self.word())


class _Parser:
    def __init__(self, text, pos, line, out, ctx, stop_paren):
        self.lx = _Lexer(text, pos, line, out, ctx)
        self.out, self.stop_paren = out, stop_paren
        # ctx: [function name, brace depth at its body, case patterns]; shared with the
        # substitutions parsed inside, so their commands belong to the same function
        self.ctx = ctx

    def run(self):
        out, lx = self.out, self.lx
        cur, hds = [], []
        depth = 0  # ( ) nesting in this parser
        braces = 0  # { } and compound-command nesting
        cases = []  # for each open case: "head" (subject, waiting for 'in'), "pat" or "cmd"
        mode = None  # "for" (skipping a for list), "func" (after 'function')
        for_var, for_words = None, []
        func_stack = []
        pending_func = None
        want_redir_target = None

        def flush():
            nonlocal cur, hds
            if cur:
                func = self.ctx[0]
                if cur[0].lit in ("local", "export", "declare", "readonly", "typeset"):
                    for a in cur[1:]:
                        if ASSIGN.match(a.raw):
                            n, v = a.raw.split("=", 1)
                            out.assigns.setdefault(n.rstrip("+"), []).append(_value_word(v, a.line))
                pats = cases_pats[-1] if cases and cases[-1] == "cmd" else None
                out.cmds.append(Cmd(cur, cur[0].line, func, pats, hds, braces))
            cur, hds = [], []

        cases_pats = []

        def end_func():
            if func_stack and braces == func_stack[-1][1]:
                func_stack.pop()
                self.ctx[0] = func_stack[-1][0] if func_stack else outer_func

        def begin_func(name):
            out.funcs.add(name)
            func_stack.append([name, braces])
            self.ctx[0] = name

        outer_func = self.ctx[0]
        while True:
            in_pat = bool(cases) and cases[-1] in ("pat", "head")
            tok = lx.next(
                not cur and mode is None and not in_pat and want_redir_target is None,
                mode == "for" and for_var is None and not for_words,
            )
            kind = tok[0]
            if kind == "eof":
                flush()
                return
            if want_redir_target is not None:
                if kind == "word":
                    if want_redir_target in ("<<", "<<-"):
                        w = tok[1]
                        hd = Heredoc(any(q in w.raw for q in "'\"\\"))
                        lx.pending.append((w.val, want_redir_target == "<<-", hd))
                        hds.append(hd)
                    want_redir_target = None
                    continue
                want_redir_target = None
            if mode == "for":
                if kind == "word" and tok[1].lit == "do" and for_done_list:
                    mode = None
                    if for_var:
                        out.for_vars.setdefault(for_var, []).extend(for_words)
                        out.assigns.setdefault(for_var, []).extend(for_words)
                    continue
                if kind == "word":
                    if for_var is None and not for_words and tok[1].lit != "in":
                        for_var = tok[1].lit
                    elif tok[1].lit == "in" and not for_words:
                        for_words.append(None)
                    else:
                        for_words.append(tok[1])
                elif kind in ("nl", "op"):
                    for_done_list = True
                continue
            if cases and cases[-1] == "head":
                if kind == "word" and tok[1].lit == "in":
                    cases[-1] = "pat"
                    cases_pats[-1] = []
                continue
            if cases and cases[-1] == "pat":
                if kind == "word":
                    if tok[1].lit == "esac":
                        cases.pop()
                        cases_pats.pop()
                        braces -= 1
                        end_func()
                    else:
                        cases_pats[-1].append(tok[1].val)
                elif kind == "op" and tok[1] == ")":
                    cases[-1] = "cmd"
                continue
            if kind == "redir":
                want_redir_target = tok[1]
                continue
            if kind == "skip":
                continue
            if kind == "nl" or (kind == "op" and tok[1] in ("|", "||", "&&", "|&", ";", "&")):
                flush()
                continue
            if kind == "op" and tok[1] in (";;", ";&", ";;&"):
                flush()
                if cases:
                    cases[-1] = "pat"
                    cases_pats[-1] = []
                continue
            if kind == "op" and tok[1] == "(":
                if len(cur) == 1 and cur[0].lit and not hds:  # name ( ) : a function
                    pending_func = cur[0].lit
                    cur = []
                    continue
                if pending_func is not None and not cur:
                    continue
                flush()
                depth += 1
                continue
            if kind == "op" and tok[1] == ")":
                if pending_func is not None and not cur:
                    begin_func(pending_func)
                    pending_func = None
                    continue
                flush()
                if depth == 0 and self.stop_paren:
                    return
                depth -= 1
                continue
            w = tok[1]
            if cur:
                cur.append(w)
                continue
            k = w.lit
            if mode == "func":
                begin_func(k)
                mode = None
                continue
            if k in ("{", "if", "while", "until", "select"):
                braces += 1
                continue
            if k in ("}", "fi", "done", "esac"):
                braces -= 1
                if k == "esac" and cases:
                    cases.pop()
                    cases_pats.pop()
                end_func()
                continue
            if k in ("then", "else", "elif", "do", "!", "time", "in"):
                continue
            if k == "case":
                braces += 1
                cases.append("head")
                cases_pats.append([])
                continue
            if k in ("for",):
                braces += 1
                mode, for_var, for_words, for_done_list = "for", None, [], False
                continue
            if k == "function":
                mode = "func"
                continue
            if ASSIGN.match(w.raw):
                name = re.match(r"[A-Za-z_]\w*", w.raw).group(0)
                val = w.raw.split("=", 1)[1]
                out.assigns.setdefault(name, []).append(_value_word(val, w.line))
                continue
            if pending_func is not None:  # "name ()" then a body that is not { or (
                begin_func(pending_func)
                pending_func = None
            cur = [w]


def _value_word(raw, line):
    """The right side of an assignment, as a Word."""
    if not raw:
        return Word("", "", False, line)
    lx = _Lexer(raw, 0, line, Script(), [None])
    return lx.word()


def parse(text, line=1, func=None):
    """Parses text (a script, or a string that eval or sh -c runs) into a Script."""
    out = Script()
    _Parser(text, 0, line, out, [func], False).run()
    return out
