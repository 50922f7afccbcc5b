#!/bin/sh
# Install the Debian 12 packages needed to build, run and test L3KV. Run as root.
# Quiet and idempotent: packages already present are left alone.
set -eu
PKGS="build-essential meson ninja-build pkg-config libh2o-evloop-dev libjansson-dev liburing-dev libssl-dev
      python3 python3-pytest python3-requests curl"
if [ "${1:-}" = "--all" ]; then
    # test and benchmark extras: clang/libFuzzer, load generators, reverse proxy
    PKGS="$PKGS clang libclang-rt-14-dev wrk nghttp2-client h2o valgrind"
fi
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
