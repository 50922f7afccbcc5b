#!/bin/sh
# Install the Debian 12 packages needed to build, run and test L3KV. Run as root.
# Quiet and idempotent: packages already present are left alone.
set -eu
PKGS="build-essential meson ninja-build pkg-config libh2o-evloop-dev libjansson-dev liburing-dev libssl-dev libcurl4-openssl-dev
      python3 python3-pytest python3-requests curl"
if [ "${1:-}" = "--all" ]; then
    # test and benchmark extras: clang/libFuzzer, load generators, reverse proxies (h2o; haproxy
    # for the sharding tests), node for the dashboard script test, systemd-analyze (package
    # systemd) for the unit check, the openssl CLI for the TLS tests, promtool (package
    # prometheus) for the exposition and alert-rule checks, Redis and webdis for the benchmark
    # suite, a headless browser for the dashboard test (chromium is installed with its
    # recommended packages: fonts and the like it renders with)
    PKGS="$PKGS clang libclang-rt-14-dev wrk nghttp2-client h2o valgrind nodejs systemd openssl clang-format
          prometheus redis-server webdis haproxy"
    BROWSER=chromium
fi
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
browser=""
if [ -n "${BROWSER:-}" ] && ! dpkg-query -W -f='${Status}' "$BROWSER" 2>/dev/null | grep -q "install ok installed"; then
    browser=$BROWSER
fi
if [ -n "$missing" ] || [ -n "$browser" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    [ -z "$missing" ] || apt-get install -y -qq --no-install-recommends $missing >/dev/null
    [ -z "$browser" ] || apt-get install -y -qq "$browser" >/dev/null
fi
