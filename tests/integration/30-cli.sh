#!/bin/bash
# The command line: help, usage errors and bad input give one clear line and the right exit
# status, never a crash; an empty store lists nothing.
. "$(dirname "$0")/lib.sh"

D=$TEST_TMPDIR/data
afsp() { "$AFSP_BIN" --data "$D" "$@"; }

out=$("$AFSP_BIN" --help)
for c in pull images layers prune inspect genkey; do assert_contains "$out" "  $c " "afsp --help lists $c"; done
out=$("$AFSP_BIN" pull --help)
assert_contains "$out" "usage: afsp pull" "pull --help"
assert_contains "$out" "--platform" "pull --help documents --platform"
out=$("$AFSP_BIN" help prune)
assert_contains "$out" "--percent N"

# usage errors: exit 2 and a hint
set +e
"$AFSP_BIN" frobnicate >/dev/null 2>"$TEST_TMPDIR/err"; rc=$?
set -e
assert_eq 2 "$rc" "unknown command exit status"
assert_contains "$(cat "$TEST_TMPDIR/err")" "unknown command 'frobnicate'"
set +e
afsp pull >/dev/null 2>"$TEST_TMPDIR/err"; rc=$?
set -e
assert_eq 2 "$rc" "pull without IMAGE"
assert_contains "$(cat "$TEST_TMPDIR/err")" "IMAGE is missing"
for bad in "--percent 101" "--percent -1" "--percent x" ""; do
    set +e
    # shellcheck disable=SC2086
    afsp prune $bad >/dev/null 2>&1; rc=$?
    set -e
    assert_eq 2 "$rc" "prune $bad is a usage error"
done
expect_fail "$AFSP_BIN" --cache-max-bytes 12Q layers
assert_contains "$EXPECT_FAIL_OUTPUT" "not a byte count"

# bad references: exit 1, one line naming the problem, no store damage
for ref in "UPPER/case:1" "127.0.0.1:5000/x:bad tag" "x@sha256:1234" "127.0.0.1:99999/x:1" ""; do
    set +e
    "$AFSP_BIN" --data "$D" pull "$ref" >/dev/null 2>"$TEST_TMPDIR/err"; rc=$?
    set -e
    assert_eq 1 "$rc" "pull '$ref' exit status"
    assert_eq 1 "$(wc -l <"$TEST_TMPDIR/err")" "pull '$ref' prints one line"
    assert_contains "$(cat "$TEST_TMPDIR/err")" "afsp: cannot pull $ref: "
    assert_contains "$(cat "$TEST_TMPDIR/err")" ": invalid image reference"
done

# nothing listening: a network error, bounded in time
port=$(free_port)
start=$(date +%s)
expect_fail afsp pull "127.0.0.1:$port/nothing:1"
assert_contains "$EXPECT_FAIL_OUTPUT" "afsp: cannot pull 127.0.0.1:$port/nothing:1:"
(($(date +%s) - start < 60)) || fail "a refused connection took more than 60 s to report"

# an empty store lists nothing, in both formats
assert_eq "[]" "$(afsp images --json | tr -d ' \n')"
assert_eq "[]" "$(afsp layers --json | tr -d ' \n')"
assert_eq 1 "$(afsp layers | wc -l)" "header only"
expect_fail afsp inspect files sha256:0000000000000000000000000000000000000000000000000000000000000000
assert_contains "$EXPECT_FAIL_OUTPUT" "not found"
expect_fail afsp inspect extract 127.0.0.1:1/none:1 "$TEST_TMPDIR/x"
assert_contains "$EXPECT_FAIL_OUTPUT" "is not in the store"
# genkey: 32 random bytes in base64, a new key each time
k1=$("$AFSP_BIN" genkey) k2=$("$AFSP_BIN" genkey)
assert_eq 32 "$(printf '%s' "$k1" | base64 -d | wc -c)" "genkey prints 32 bytes in base64"
assert_eq 44 "${#k1}" "one line of 44 characters"
[ "$k1" != "$k2" ] || fail "two genkey runs printed the same key"
expect_fail afsp genkey extra
assert_contains "$EXPECT_FAIL_OUTPUT" "unexpected argument extra"
log "cli ok"
