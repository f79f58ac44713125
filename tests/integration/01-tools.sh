#!/bin/bash
# Every external command that the tests, scripts, benchmarks and the Makefile call comes from a
# package that scripts/deps.sh installs (or one those depend on, or an Essential one):
# scripts/check-tools.py passes on the tree, and it catches what it is there to catch, on a copy
# of the tree: a package taken out of deps.sh (attr, as issue 14 found it missing: setfattr in
# 50-mount.sh and test_tar.c), and commands from no package planted in every place a command
# can hide (a pipe, $( ), timeout/env/xargs/find -exec/sh -c/eval, lib.sh's start_bg and
# require, a python here-document, C's SH()/system()/execlp(), Python's subprocess, a make
# recipe and $(shell)), while words that are no command (arguments, comments, case patterns,
# here-document text, for lists, arrays, functions) are not taken for one.
. "$(dirname "$0")/lib.sh"

CHECK=$AFSP_SRC/scripts/check-tools.py
T=$TEST_TMPDIR/tree

log "the tree: every tool is from deps.sh's packages"
out=$("$PY" "$CHECK" -v 2>&1) || fail "scripts/check-tools.py fails on the tree:
$out"
printf '%s\n' "$out" | tail -n 1
# it saw the tools the suite stands on, each from its package or one that pulls that in (a
# check that finds nothing would pass too)
for t in umoci:umoci skopeo:skopeo docker-registry:docker-registry setfattr:attr \
    setcap:libcap2-bin zstd:zstd htpasswd:apache2-utils fusermount3:fuse3 ps:procps \
    /usr/bin/python3:python3 /bin/busybox:busybox-static git:git awk:mawk; do
    printf '%s\n' "$out" | grep -Eq "^${t%%:*} +[^ ]+ +(.* <- )?${t#*:} <- " ||
        fail "check-tools -v does not list ${t%%:*} from ${t#*:}: $out"
done

# copy_tree: the scanned files of the source tree, into $T
copy_tree() {
    rm -rf "$T"
    mkdir -p "$T"
    (cd "$AFSP_SRC" && tar -cf - Makefile .ci scripts tests/integration tests/unit tests/runner.c \
        bench/*.c bench/*.h bench/*.sh bench/*.py cmd/*.c) | tar -xf - -C "$T"
}

# line_of FILE TEXT: the first line of FILE (under $T) holding TEXT
line_of() { grep -nF -m1 -- "$2" "$T/$1" | cut -d: -f1; }

log "a package taken out of deps.sh: its tools are named, with every place that calls them"
copy_tree
sed -E -i 's/(^| )(attr|apache2-utils)( |$)/\1\3/' "$T/scripts/deps.sh"
grep -Eq '(^| )(attr|apache2-utils)( |$)' "$T/scripts/deps.sh" && fail "sed left attr in deps.sh"
expect_fail "$PY" "$CHECK" --root "$T"
out=$EXPECT_FAIL_OUTPUT
I=tests/integration
assert_contains "$out" "check-tools: setfattr: /usr/bin/setfattr is from attr, which scripts"
assert_contains "$out" "called at $I/50-mount.sh:$(line_of $I/50-mount.sh setfattr)"
U=tests/unit/test_tar.c
assert_contains "$out" "called at $U:$(line_of $U 'setfattr -n user.foo')"
assert_contains "$out" "check-tools: htpasswd: /usr/bin/htpasswd is from apache2-utils"
assert_contains "$out" "called at $I/lib.sh:$(line_of $I/lib.sh 'htpasswd -Bbn')"
assert_contains "$out" "FAILED: 2 of "

log "planted commands from no package are caught wherever they are called"
copy_tree
P=tests/integration/99-planted.sh
cat >"$T/$P" <<'EOF'
#!/bin/bash
. "$(dirname "$0")/lib.sh"
x=$(planted-in-subst --flag)
echo a | planted-after-pipe
true && planted-after-and
timeout -s KILL 5 planted-after-timeout arg
env -i A=1 B=2 planted-after-env
start_bg name planted-via-start-bg arg
xargs -n 1 planted-after-xargs <"$TEST_TMPDIR/f"
if planted-in-if; then :; fi
case $x in a) planted-in-case ;; esac
eval "planted-in-eval x"
find . -name x -exec planted-in-find-exec {} \;
sh -c 'planted-in-sh-c'
require planted-in-require
wait_until 5 eval 'planted-in-wait-until-eval'
"$PY" - <<'PYEOF'
import subprocess
subprocess.run(["planted-in-python-heredoc", "x"])
PYEOF
[ -x /usr/bin/planted-absolute ] || fail x
# planted-in-comment
echo planted-as-argument
case planted-case-subject in planted-case-pattern) : ;; esac
planted_function() { :; }
planted_function
cat <<'TXT'
planted-in-heredoc-text
TXT
for w in planted-for-word; do :; done
x=(planted-in-array)
"$AFSP_BIN" planted-afsp-arg
EOF
C=tests/unit/test_planted.c
cat >"$T/$C" <<'EOF'
static void planted(void)
{
    SH("planted-in-c-sh %s", "x");
    system("true | planted-in-c-system");
    execlp("planted-in-execlp", "planted-in-execlp", (char *)NULL);
}
EOF
Y=tests/integration/planted.py
cat >"$T/$Y" <<'EOF'
import os
import subprocess
subprocess.check_output(["planted-in-py", "-x"])
os.system("planted-in-os-system arg")
EOF
cat >>"$T/Makefile" <<'EOF'
PLANTED := $(shell planted-in-make-shell)
planted:
	@planted-in-make-recipe x
EOF
expect_fail "$PY" "$CHECK" --root "$T"
out=$EXPECT_FAIL_OUTPUT
n=0
for c in "$P:planted-in-subst" "$P:planted-after-pipe" "$P:planted-after-and" \
    "$P:planted-after-timeout" "$P:planted-after-env" "$P:planted-via-start-bg" \
    "$P:planted-after-xargs" "$P:planted-in-if" "$P:planted-in-case" "$P:planted-in-eval" \
    "$P:planted-in-find-exec" "$P:planted-in-sh-c" "$P:planted-in-require" \
    "$P:planted-in-wait-until-eval" "$P:planted-in-python-heredoc" "$P:/usr/bin/planted-absolute" \
    "$C:planted-in-c-sh" "$C:planted-in-c-system" "$C:planted-in-execlp" \
    "$Y:planted-in-py" "$Y:planted-in-os-system" \
    Makefile:planted-in-make-shell Makefile:planted-in-make-recipe; do
    f=${c%%:*} t=${c#*:}
    assert_contains "$out" "check-tools: $t: not found" "planted $t"
    assert_contains "$out" "    called at $f:$(line_of "$f" "$t")" "where $t is called"
    n=$((n + 1))
done
for t in planted-in-comment planted-as-argument planted-case-subject planted-case-pattern \
    planted_function planted-in-heredoc-text planted-for-word planted-in-array planted-afsp-arg; do
    assert_not_contains "$out" "check-tools: $t:" "$t is no command"
done
assert_contains "$out" "FAILED: $n of "
log "check-tools caught all $n planted commands and took none of the 9 decoys for one"
