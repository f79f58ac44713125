#!/bin/bash
# An image index: the host's platform by default, another with --platform, a clear error for a
# platform the index lacks.
. "$(dirname "$0")/lib.sh"

start_registry
push_multiplatform "$REGISTRY/multi:1"
D=$TEST_TMPDIR/data
afsp() { "$AFSP_BIN" --data "$D" "$@"; }

case $(uname -m) in
x86_64) host=amd64 other=arm64 ;;
aarch64) host=arm64 other=amd64 ;;
*) fail "this test knows amd64 and arm64 hosts only" ;;
esac
want_digest() { local v="MULTI_${1^^}_DIGEST"; printf '%s' "${!v}"; }

out=$(afsp pull "$REGISTRY/multi:1")
assert_eq "$REGISTRY/multi:1 $(want_digest $host)" "$out" "default platform"
afsp inspect extract "$REGISTRY/multi:1" "$TEST_TMPDIR/a"
assert_eq "linux/$host" "$(cat "$TEST_TMPDIR/a/platform")"
assert_contains "$(afsp images)" "linux/$host"

D=$TEST_TMPDIR/data2
out=$(afsp pull --platform "linux/$other" "$REGISTRY/multi:1")
assert_eq "$REGISTRY/multi:1 $(want_digest $other)" "$out" "--platform linux/$other"
afsp inspect extract "$REGISTRY/multi:1" "$TEST_TMPDIR/b"
assert_eq "linux/$other" "$(cat "$TEST_TMPDIR/b/platform")"
assert_contains "$(afsp images --json)" "\"platform\": \"linux/$other\""

# by the index digest, too
D=$TEST_TMPDIR/data3
out=$(afsp pull "$REGISTRY/multi@$MULTI_INDEX_DIGEST")
assert_contains "$out" "$(want_digest $host)"

expect_fail afsp pull --platform linux/s390x "$REGISTRY/multi:1"
assert_contains "$EXPECT_FAIL_OUTPUT" "afsp: cannot pull $REGISTRY/multi:1:"
assert_contains "$EXPECT_FAIL_OUTPUT" "linux/s390x"
assert_contains "$EXPECT_FAIL_OUTPUT" "no manifest for this platform"
expect_fail afsp pull --platform "linux" "$REGISTRY/multi:1"
