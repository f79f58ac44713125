#!/bin/bash
# Registries that want credentials: htpasswd Basic and the Bearer-token flow, with credentials
# from $DOCKER_CONFIG/config.json; refusals are one clear line; no secret is ever printed.
. "$(dirname "$0")/lib.sh"

build_busybox_image "$TEST_TMPDIR/oci" bb
D=$TEST_TMPDIR/data
export DOCKER_CONFIG=$TEST_TMPDIR/docker-config
afsp() { "$AFSP_BIN" --data "$D" "$@"; }
secret="s3cr3t-pa55"

write_config() { # HOST USER:PASS
    mkdir -p "$DOCKER_CONFIG"
    printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$1" "$(printf '%s' "$2" | base64 -w0)" \
        >"$DOCKER_CONFIG/config.json"
}

for mode in htpasswd token; do
    rm -rf "$DOCKER_CONFIG" "$D"
    start_registry "--$mode" "alice:$secret"
    push_image "$TEST_TMPDIR/oci" bb "$REGISTRY/bb:1" --creds "alice:$secret"

    # anonymous: refused, one line naming the registry
    expect_fail afsp -vv pull "$REGISTRY/bb:1"
    assert_contains "$EXPECT_FAIL_OUTPUT" "afsp: cannot pull $REGISTRY/bb:1:"
    assert_contains "$EXPECT_FAIL_OUTPUT" "authentication failed"
    # wrong password: refused
    write_config "$REGISTRY" "alice:wrong"
    expect_fail afsp pull "$REGISTRY/bb:1"
    assert_contains "$EXPECT_FAIL_OUTPUT" "authentication failed"
    assert_eq "[]" "$(afsp layers --json | tr -d ' \n')" "nothing stored after a refusal"

    # right credentials: pulled, and neither the password nor its base64 appears in debug logs
    write_config "$REGISTRY" "alice:$secret"
    out=$(afsp -vv pull "$REGISTRY/bb:1" 2>&1)
    assert_contains "$out" "$REGISTRY/bb:1 $PUSHED_DIGEST"
    assert_not_contains "$out" "$secret" "the password leaked into the log"
    assert_not_contains "$out" "$(printf 'alice:%s' "$secret" | base64 -w0)" "credentials leaked"
    afsp inspect extract "$REGISTRY/bb:1" "$TEST_TMPDIR/ex-$mode"
    [ -x "$TEST_TMPDIR/ex-$mode/bin/busybox" ] || fail "busybox missing from the extracted image"
    cmp -s /bin/busybox "$TEST_TMPDIR/ex-$mode/bin/busybox" || fail "busybox differs"
    log "$mode: ok"
done
# the "https://host" spelling of the auths key also counts
rm -rf "$D"
write_config "https://$REGISTRY" "alice:$secret"
afsp pull "$REGISTRY/bb:1" >/dev/null
