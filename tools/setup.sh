#!/bin/sh
# Prepare a build: install the Debian packages L3KV needs (as root, only what is missing),
# then configure the meson build directory `build` unless it is already configured.
# Extra arguments go to `meson setup` (e.g. -Dsanitize=address,undefined).
set -eu
cd "$(dirname "$0")/.."
tools/deps-debian.sh
if [ ! -f build/build.ninja ]; then
    meson setup build "$@"
fi
