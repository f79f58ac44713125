#!/bin/bash
# make layering: every #include of the tree is one docs/architecture.md's table allows; and the
# check catches what it is there to catch, on a copy of the tree with forbidden includes planted:
# libuv in the node core, store internals in fs/, the network in store.h, a module's *_int.h from
# another, a library header where only another module may use it, a file no row names.
. "$(dirname "$0")/lib.sh"

CHECK=$AFSP_SRC/scripts/layering.py
out=$("$CHECK" --root "$AFSP_SRC" 2>&1) || fail "scripts/layering.py fails on the tree:
$out"
assert_contains "$out" "every include as docs/architecture.md allows"

T=$TEST_TMPDIR/tree
mkdir -p "$T"
(cd "$AFSP_SRC" && git ls-files -z '*.c' '*.h' | xargs -0 cp --parents -t "$T" && cp --parents docs/architecture.md "$T")
"$CHECK" --root "$T" >/dev/null || fail "the copy of the tree does not pass as the tree does"

plant() { # FILE LINE: puts LINE after the first line of FILE
    sed -i "1a $2" "$T/$1"
}
plant node/link.c '#include <uv.h>'
plant fs/tree.c '#include "../store/store_int.h"'
plant store/store.h '#include "pull/pull.h"'
plant cmd/mount.c '#include "../node/node_int.h"'
plant dht/table.c '#include <curl/curl.h>'
plant sim/nodes.c '#include "../store/store.h"'
plant node/fetch.c '#include <jansson.h>'
mkdir -p "$T/stray" && echo '#include <stdio.h>' >"$T/stray/run.c"
expect_fail "$CHECK" --root "$T"
out=$EXPECT_FAIL_OUTPUT
assert_contains "$out" "node/link.c:2: includes <uv.h> (uv)"
assert_contains "$out" "fs/tree.c:2: includes store/store_int.h"
assert_contains "$out" "store/store.h:2: includes store/pull/pull.h"
assert_contains "$out" "cmd/mount.c:2: includes node/node_int.h"
assert_contains "$out" "dht/table.c:2: includes <curl/curl.h> (curl)"
assert_contains "$out" "sim/nodes.c:2: includes store/store.h"
assert_contains "$out" "node/fetch.c:2: includes <jansson.h> (jansson)"
assert_contains "$out" "stray/run.c: no row of the table names it"
assert_contains "$out" "FAILED: 8 include(s)"
log "ok"
