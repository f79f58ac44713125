# lib-mount.sh - helpers for tests of `afsp mount`; source after lib.sh.
#
#   mount_image DATA REF DIR [mount options]   mounts (DIR made if missing), unmounted at exit
#   is_mounted DIR                             DIR is an afsp mount now
#   mount_log DATA DIR                         the mount process's log file
#   mount_pid DATA DIR                         the mount process's pid

# Unmounts DIR if it is still mounted (lazily, so that a test that failed with files open does
# not leave it behind); the mount process exits once the kernel lets go.
_unmount_at_exit() {
    local dir=$1
    if is_mounted "$dir"; then
        umount -l "$dir" 2>/dev/null || fusermount3 -uz "$dir" 2>/dev/null || true
    fi
}

is_mounted() {
    awk -v m="$(realpath -m "$1")" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo
}

mount_image() {
    local data=$1 ref=$2 dir=$3
    shift 3
    mkdir -p "$dir"
    on_exit "_unmount_at_exit '$dir'"
    "$AFSP_BIN" --data "$data" mount "$@" "$ref" "$dir"
    is_mounted "$dir" || fail "afsp mount returned but $dir is not mounted"
}

_mount_state() {
    local h
    h=$(printf '%s' "$(realpath -m "$2")" | sha256sum | cut -c1-16)
    printf '%s/mounts/%s.%s' "$1" "$h" "$3"
}
mount_log() { _mount_state "$1" "$2" log; }
mount_pid() { cut -d' ' -f1 "$(_mount_state "$1" "$2" pid)"; }

# alive PID: the process exists and has not exited (a zombie whose parent has not reaped it yet
# counts as exited: mount processes are reparented, and the reaper may be slow).
alive() {
    local st
    st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
