#!/bin/bash
# The demo of the main job, on this machine: a registry on loopback, a small image built with
# umoci and pushed with skopeo, then `afsp pull` into a fresh store, `afsp images`, `afsp layers`,
# the image mounted lazily with `afsp mount` and a program run from it with chroot, and
# `afsp umount`. Everything it starts is stopped on exit; it leaves nothing behind but its output.
set -euo pipefail
cd "$(dirname "$0")/.."
export TEST_TMPDIR=$(mktemp -d /tmp/afsp-demo.XXXXXX)
. tests/integration/lib.sh
. tests/integration/lib-mount.sh
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
M=$TEST_TMPDIR/mnt
mkdir -p "$M"
on_exit "_unmount_at_exit '$M'"
step $AFSP mount "$REGISTRY/demo:1" "$M"
step ls -l "$M/bin"
step chroot "$M" /bin/sh -c 'cat /etc/motd; ls /'
step $AFSP umount "$M"
printf '\nThe store is in %s/data (removed on exit).\n' "$TEST_TMPDIR"
