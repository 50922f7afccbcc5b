#!/bin/sh
# run-fuzz.sh SECONDS [TARGET...] - bounded libFuzzer run of the document-format and HTTP targets.
#
# Configures a clang build in build-fuzz (CC=clang, -Dfuzzing=true, -Db_lundef=false; an
# existing one is reused), builds only the fuzz targets, then runs each target (default:
# fuzz-json fuzz-verify fuzz-patch fuzz-http) for SECONDS seconds on a scratch copy of its committed corpus
# (tests/fuzz/corpus/<target>/ is read, never written). Exits non-zero when a target
# finds a crash, leak, timeout or out-of-memory; the input is left in
# build-fuzz/fuzz-artifacts/. Exits 0 with a message when clang or libFuzzer is missing.
# Environment: FUZZ_BUILD (build dir, default build-fuzz), FUZZ_JOBS (parallel workers
# per target, default 1), FUZZ_ARGS (extra libFuzzer flags).
set -eu

secs=${1:-20}
[ $# -gt 0 ] && shift
targets=${*:-fuzz-json fuzz-verify fuzz-patch fuzz-http}
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${FUZZ_BUILD:-build-fuzz}
case $build in /*) ;; *) build=$root/$build ;; esac

if ! command -v clang >/dev/null 2>&1; then
    echo "run-fuzz: clang not installed, skipping the fuzz run (apt-get install clang)"
    exit 0
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
    >"$probe/p.c"
if ! clang -fsanitize=fuzzer,address "$probe/p.c" -o "$probe/p" >/dev/null 2>&1; then
    echo "run-fuzz: clang cannot link -fsanitize=fuzzer (libFuzzer missing: apt-get install libclang-rt-dev" \
         "or the llvm-<version> compiler-rt package), skipping the fuzz run"
    exit 0
fi

cd "$root"
if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" -Dfuzzing=true -Db_lundef=false
else
    meson configure "$build" -Dfuzzing=true >/dev/null
fi
tgts=""
for t in $targets; do tgts="$tgts tests/fuzz/$t"; done
# shellcheck disable=SC2086
ninja -C "$build" $tgts

art="$build/fuzz-artifacts"
mkdir -p "$art"
status=0
for t in $targets; do
    work="$build/fuzz-corpus/$t"
    mkdir -p "$work"
    dict=""
    [ "$t" = fuzz-json ] && dict="-dict=$root/tests/fuzz/json.dict"
    [ "$t" = fuzz-http ] && dict="-dict=$root/tests/fuzz/http.dict"
    maxlen=65536
    [ "$t" = fuzz-verify ] && maxlen=16384
    echo "run-fuzz: $t for ${secs}s"
    # new inputs go to $work (first dir); the committed corpus is only read
    # shellcheck disable=SC2086
    if ! ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
        "$build/tests/fuzz/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=$maxlen \
        -print_final_stats=1 -artifact_prefix="$art/$t-" -jobs="${FUZZ_JOBS:-1}" -workers="${FUZZ_JOBS:-1}" \
        $dict ${FUZZ_ARGS:-} "$work" "$root/tests/fuzz/corpus/$t"; then
        echo "run-fuzz: $t FAILED; reproduce with: $build/tests/fuzz/$t $art/$t-<file>" >&2
        status=1
    fi
done
[ $status -eq 0 ] && echo "run-fuzz: no findings"
exit $status
