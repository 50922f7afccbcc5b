#!/bin/sh
# Check (default) or apply (--fix) .clang-format on the C sources of src/, include/ and
# tools/. Exits 1 and lists the files that differ. Needs clang-format 14 (Debian 12).
set -eu
cd "$(dirname "$0")/.."
fix=0
[ "${1:-}" = "--fix" ] && fix=1
command -v clang-format >/dev/null || { echo "check-format: clang-format not found" >&2; exit 2; }
bad=0
for f in $(git ls-files 'src/*.[ch]' 'include/*.[ch]' 'tools/*.[ch]'); do
    if [ $fix = 1 ]; then
        clang-format -i "$f"
    elif ! clang-format "$f" | cmp -s "$f" -; then
        echo "check-format: $f differs from .clang-format (tools/check-format.sh --fix)"
        bad=1
    fi
done
exit $bad
