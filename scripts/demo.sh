#!/bin/bash
# The demo of the main job, on this machine: a registry on loopback, a small image built with
# umoci and pushed with skopeo, then `afsp pull` into a fresh store, `afsp images`, `afsp layers`,
# and the image's files read back through afsp's layer index. Everything it starts is stopped
# on exit; it leaves nothing behind but its output.
set -euo pipefail
cd "$(dirname "$0")/.."
export TEST_TMPDIR=$(mktemp -d /tmp/afsp-demo.XXXXXX)
. tests/integration/lib.sh
on_exit "rm -rf '$TEST_TMPDIR'"

AFSP="$AFSP_BIN --data $TEST_TMPDIR/data"
start_registry
build_busybox_image "$TEST_TMPDIR/oci" demo --applets "sh ls cat echo" \
    --file "/etc/motd=hello from an image pulled by afsp"
push_image "$TEST_TMPDIR/oci" demo "$REGISTRY/demo:1" --compress gzip

step() { printf '\n$ %s\n' "$*"; "$@"; }
step $AFSP pull "$REGISTRY/demo:1"
step $AFSP images
step $AFSP layers
step $AFSP inspect extract "$REGISTRY/demo:1" "$TEST_TMPDIR/rootfs"
step cat "$TEST_TMPDIR/rootfs/etc/motd"
step ls -l "$TEST_TMPDIR/rootfs/bin"
printf '\nThe store is in %s/data (removed on exit).\n' "$TEST_TMPDIR"
