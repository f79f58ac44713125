#!/bin/bash
# The demo of the main job, on this machine: a registry on loopback and a small image built with
# umoci and pushed with skopeo; two nodes (`afsp node`, a cluster key made with `afsp genkey`);
# node A pulls the image from the registry; the registry is stopped; node B mounts the image by
# digest, lazily, its chunks coming from A as they are read, and a program runs from it with
# chroot; then B runs a job on the image with `afsp run` (runc, its root an overlay of the
# image's mount, its cpus and memory limited); `afsp peers`, `afsp stats` and `afsp jobs` show
# the exchange. Everything it starts is stopped on exit; it leaves nothing behind but its output.
set -euo pipefail
cd "$(dirname "$0")/.."
export TEST_TMPDIR=$(mktemp -d /tmp/afsp-demo.XXXXXX)
. tests/integration/lib.sh
. tests/integration/lib-node.sh
. tests/integration/lib-mount.sh
on_exit "rm -rf '$TEST_TMPDIR'"

A=$TEST_TMPDIR/A B=$TEST_TMPDIR/B
start_registry
build_busybox_image "$TEST_TMPDIR/oci" demo --applets "sh ls cat echo" \
    --file "/etc/motd=hello from an image node B read from node A"
push_image "$TEST_TMPDIR/oci" demo "$REGISTRY/demo:1" --compress gzip

step() { printf '\n$ %s\n' "$*"; "$@"; }
pa=$(free_port) pb=$(free_port)
printf '\n$ %s genkey > %s\n' "$AFSP_BIN" "$TEST_TMPDIR/cluster.key"
"$AFSP_BIN" genkey >"$TEST_TMPDIR/cluster.key"
printf '(nodes A on 127.0.0.1:%s and B on 127.0.0.1:%s, B seeded with A; logs in %s/logs)\n' \
    "$pa" "$pb" "$TEST_TMPDIR"
start_node nodeA "$A" "$pa"
start_node nodeB "$B" "$pb" "$pa"
wait_until 15 has_peers "$B" 1
step "$AFSP_BIN" --data "$A" pull "$REGISTRY/demo:1"
digest=$("$AFSP_BIN" --data "$A" images --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["manifestDigest"])')
step "$AFSP_BIN" --data "$A" layers
printf '\n(the registry stops: B gets everything from A)\n'
kill_bg "$REGISTRY_PID"
M=$TEST_TMPDIR/mnt
mkdir -p "$M"
on_exit "_unmount_at_exit '$M'"
step "$AFSP_BIN" --data "$B" mount "$REGISTRY/demo@$digest" "$M"
step "$AFSP_BIN" --data "$B" layers
step chroot "$M" /bin/sh -c 'cat /etc/motd; ls /'
step "$AFSP_BIN" --data "$B" layers
step "$AFSP_BIN" --data "$B" peers
step "$AFSP_BIN" --data "$B" stats
step "$AFSP_BIN" --data "$B" umount "$M"
printf '\n(B runs a job on the image: a container whose root is the image, read-only and shared,\n under a writable layer of its own)\n'
step "$AFSP_BIN" --data "$B" run --cpus 0.5 --memory 64M "$REGISTRY/demo@$digest" -- \
    sh -c 'cat /etc/motd; echo "a job wrote this" >/note; cat /note; ls /'
step "$AFSP_BIN" --data "$B" jobs
printf '\nThe stores are in %s/A and %s/B (removed on exit).\n' "$TEST_TMPDIR" "$TEST_TMPDIR"
