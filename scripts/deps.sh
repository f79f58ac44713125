#!/bin/sh
# Installs the Debian 12 packages that building, testing and benchmarking afsp need.
# Idempotent: does nothing when every package is already installed. Needs root to install.
# scripts/check-tools.py (run by `make test`) fails when a test, script or recipe calls a
# command that none of these packages (nor their dependencies, nor Debian's Essential ones) has.
set -eu

PKGS="
build-essential pkg-config clang clang-format libclang-rt-14-dev openssl libcap2-bin
liblmdb-dev lmdb-utils libcurl4-openssl-dev libjansson-dev libssl-dev
libisal-dev zlib1g-dev libzstd-dev zstd libsodium-dev libuv1-dev libfuse3-dev fuse3
docker-registry umoci skopeo busybox-static apache2-utils python3 curl
debootstrap e2fsprogs runc podman hyperfine isal linux-perf attr procps git apt iproute2
"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: missing packages:$missing (run as root to install them)" >&2
    exit 1
fi
echo "deps.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null || apt-get update
# The registry package starts a system service we never use: keep it from starting.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d.afsp
if [ ! -e /usr/sbin/policy-rc.d ]; then
    cp /usr/sbin/policy-rc.d.afsp /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
rm -f /usr/sbin/policy-rc.d.afsp
apt-get install -y -q --no-install-recommends $missing
