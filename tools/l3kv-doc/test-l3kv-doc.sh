#!/bin/sh
# SPDX-License-Identifier: MIT
# test-l3kv-doc.sh - drives the l3kv-doc binary like a user would: round trips through
# encode|decode, get/set/merge/patch outputs, check's messages and every exit status.
# Usage: test-l3kv-doc.sh PATH-TO-l3kv-doc. Exit 0 pass, 1 fail, 99 harness error.
set -u
TOOL=${1:?usage: test-l3kv-doc.sh PATH-TO-l3kv-doc}
[ -x "$TOOL" ] || { echo "not executable: $TOOL" >&2; exit 99; }
TMP=$(mktemp -d) || exit 99
trap 'rm -rf "$TMP"' EXIT
fails=0
checks=0

fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# expect NAME WANT-STATUS WANT-STDOUT STDIN CMD...  (stdout compared exactly, stderr kept in $TMP/err)
expect() {
    name=$1 want_st=$2 want_out=$3 input=$4
    shift 4
    checks=$((checks + 1))
    printf '%s' "$input" | "$TOOL" "$@" >"$TMP/out" 2>"$TMP/err"
    st=$?
    out=$(cat "$TMP/out")
    [ "$st" -eq "$want_st" ] || fail "$name: exit $st, want $want_st (stderr: $(cat "$TMP/err"))"
    [ "$out" = "$want_out" ] || fail "$name: stdout '$out', want '$want_out'"
}

# stderr_has NAME PATTERN: the last command's stderr contains PATTERN (grep -E)
stderr_has() {
    checks=$((checks + 1))
    grep -Eq -- "$2" "$TMP/err" || fail "$1: stderr '$(cat "$TMP/err")' lacks /$2/"
}

DOC='{"name":"l3kv","n":42,"pi":3.25,"big":123456789012345678901234567890,"ok":true,"none":null,"list":[1,"two",{"three":3}],"nested":{"a":{"b":{"c":{"d":"deep"}}}},"esc":"q\"b\\s\n\u0001\u00e9\ud83d\ude00","a/b":{"m~n":7},"":0}'

# --- encode | decode round trip (compact text, key order kept)
checks=$((checks + 1))
printf '%s' "$DOC" | "$TOOL" encode >"$TMP/doc.bin" || fail "encode exited $?"
[ -s "$TMP/doc.bin" ] || fail "encode wrote nothing"
"$TOOL" decode <"$TMP/doc.bin" >"$TMP/rt.json" 2>"$TMP/err" || fail "decode exited $? ($(cat "$TMP/err"))"
# The decoder escapes minimally: the control character as \u0001, é and the emoji as raw UTF-8.
WANT_RT=$(printf '%s' "$DOC" | sed -e 's/\\u00e9/\xc3\xa9/' -e 's/\\ud83d\\ude00/\xf0\x9f\x98\x80/')
[ "$(cat "$TMP/rt.json")" = "$WANT_RT" ] || fail "round trip: got '$(cat "$TMP/rt.json")' want '$WANT_RT'"
# Second round trip is a fixed point. (The binary form is not compared: each document
# carries its own random hash seed.)
checks=$((checks + 1))
"$TOOL" encode <"$TMP/rt.json" >"$TMP/doc2.bin" || fail "re-encode exited $?"
"$TOOL" decode <"$TMP/doc2.bin" >"$TMP/rt2.json" || fail "re-decode exited $?"
cmp -s "$TMP/rt.json" "$TMP/rt2.json" || fail "second round trip differs"
# Whitespace is not kept, but the value is.
checks=$((checks + 1))
got=$(printf ' { "a" : [ 1 , 2 ] ,\n "b" : { } } ' | "$TOOL" encode | "$TOOL" decode)
[ "$got" = '{"a":[1,2],"b":{}}' ] || fail "pretty round trip: '$got'"
checks=$((checks + 1))
for v in '0' '-0' '-0.0' '-1.5e-300' '"x"' 'null' 'true' '[]' '{}' '18446744073709551616' '0.1' '1e400'; do
    got=$(printf '%s' "$v" | "$TOOL" encode | "$TOOL" decode)
    case $v in
        -0) want=0 ;; # an integer: integer zero has no sign (as in jansson); -0.0 keeps it
        *) want=$v ;;
    esac
    [ "$got" = "$want" ] || fail "scalar round trip of $v: got '$got', want '$want'"
done
# Numbers that are not exact doubles survive exactly.
expect big_exact 0 '[18446744073709551616,1e400,0.10000000000000000000001]' \
    '[18446744073709551616,1e400,0.10000000000000000000001]' get ''

# --- decode: corrupt input is refused (exit 1, clear message)
expect decode_empty 1 '' '' decode
stderr_has decode_empty 'not a valid document'
expect decode_json_text 1 '' '{"a":1}' decode
stderr_has decode_json_text 'not a valid document'
checks=$((checks + 1))
head -c 24 "$TMP/doc.bin" >"$TMP/trunc.bin"
"$TOOL" decode <"$TMP/trunc.bin" >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] || fail "decode of a truncated document: want exit 1"
stderr_has decode_truncated 'not a valid document'
checks=$((checks + 1))
{ cat "$TMP/doc.bin"; printf 'xxxxxxxx'; } >"$TMP/trail.bin"
"$TOOL" decode <"$TMP/trail.bin" >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] || fail "decode of a document with trailing bytes: want exit 1"
stderr_has decode_trailing 'bytes after its end'
checks=$((checks + 1))
# Corrupt the binary at every 3rd byte (one process writes all variants): decode must never
# crash, only accept (0) or refuse (1).
mkdir "$TMP/flips"
python3 -c 'import sys
b=open(sys.argv[1],"rb").read()
for i in range(0,len(b),3):
    c=bytearray(b); c[i]^=0x5a
    open("%s/%06d"%(sys.argv[2],i),"wb").write(c)' "$TMP/doc.bin" "$TMP/flips" || fail "cannot write corrupted copies"
for f in "$TMP"/flips/*; do
    "$TOOL" decode <"$f" >/dev/null 2>&1
    st=$?
    [ "$st" -le 1 ] || { fail "decode of a corrupted document ($(basename "$f")) exited $st"; break; }
done

# --- check
expect check_ok 0 '' '{"a":[1,2,{"b":null}]}' check
expect check_trailing_comma 1 '' '{"a":1,}' check
stderr_has check_trailing_comma '^error at byte [0-9]+: '
checks=$((checks + 1))
printf '[1,2,\001]' | "$TOOL" check 2>"$TMP/err"
[ $? -eq 1 ] || fail "check of a control character: want exit 1"
stderr_has check_control 'error at byte 5: '
expect check_empty 1 '' '' check
stderr_has check_empty 'error at byte 0: '
expect check_bad_escape 1 '' '"\x"' check
stderr_has check_bad_escape 'error at byte [12]: '
expect check_lone_surrogate 1 '' '"\ud800"' check
expect check_depth_default 0 '' "$(python3 -c 'print("["*500+"]"*500)')" check
expect check_depth_limit 1 '' "$(python3 -c 'print("["*600+"]"*600)')" check
# --max-depth only lowers the one nesting limit (512): 300 levels pass by default, not under 200
expect check_depth_option 1 '' "$(python3 -c 'print("["*300+"]"*300)')" --max-depth 200 check
expect check_depth_option_above_limit 2 '' '[]' --max-depth 1000 check
expect check_trailing_garbage 1 '' '{} x' check
stderr_has check_trailing_garbage 'error at byte 3: '

# --- get
expect get_pointer 0 '{"d":"deep"}' "$DOC" get /nested/a/b/c
expect get_dotted 0 '"deep"' "$DOC" get nested.a.b.c.d
expect get_raw 0 'deep' "$DOC" -r get nested.a.b.c.d
expect get_array_elem 0 '"two"' "$DOC" get /list/1
expect get_array_dotted 0 '3' "$DOC" get list.2.three
expect get_escaped_pointer 0 '7' "$DOC" get '/a~1b/m~0n'
expect get_empty_key 0 '0' "$DOC" get '/'
expect get_bool 0 'true' "$DOC" get ok
expect get_null 0 'null' "$DOC" get none
expect get_int 0 '42' "$DOC" get n
expect get_double 0 '3.25' "$DOC" get pi
expect get_bignum 0 '123456789012345678901234567890' "$DOC" get big
expect get_root 0 '[1,2]' '[1,2]' get ''
expect get_missing 1 '' "$DOC" get /nope
stderr_has get_missing 'no such value'
expect get_index_out_of_range 1 '' "$DOC" get /list/3
expect get_through_scalar 1 '' "$DOC" get /n/x
expect get_bad_escape 2 '' "$DOC" get '/a~2b'
stderr_has get_bad_escape 'malformed path'
expect get_bad_input 1 '' '{"a":' get a
stderr_has get_bad_input '^error at byte 5: '
checks=$((checks + 1))
got=$("$TOOL" -b get /nested/a/b/c/d <"$TMP/doc.bin")
[ "$got" = '"deep"' ] || fail "get --binary: '$got'"

# --- set (JSON in, JSON out, through the document)
expect set_int 0 '{"a":7,"b":[1]}' '{"a":1,"b":[1]}' set a 7
expect set_negative 0 '{"a":-1,"b":[1]}' '{"a":1,"b":[1]}' set /a -1
expect set_new_member_last 0 '{"a":1,"b":[1],"c":{"x":[true]}}' '{"a":1,"b":[1]}' set c '{"x":[true]}'
expect set_string_longer 0 '{"a":"a much longer string than before","b":[1]}' '{"a":"s","b":[1]}' \
    set a '"a much longer string than before"'
expect set_array_elem 0 '{"a":1,"b":[null]}' '{"a":1,"b":[1]}' set /b/0 null
expect set_array_append 0 '{"a":1,"b":[1,2]}' '{"a":1,"b":[1]}' set /b/- 2
expect set_nested_dotted 0 '{"x":{"y":{"z":"new"}}}' '{"x":{"y":{"z":0}}}' set x.y.z '"new"'
expect set_type_change 0 '{"a":{"k":[]}}' '{"a":1}' set a '{"k":[]}'
expect set_root 0 '[3]' '{"a":1}' set '' '[3]'
expect set_bignum 0 '{"a":99999999999999999999999}' '{"a":1}' set a 99999999999999999999999
expect set_missing_parent 1 '' '{"a":1}' set /x/y 1
expect set_through_scalar 1 '' '{"a":1}' set /a/b 1
expect set_index_past_end 1 '' '{"b":[1]}' set /b/5 1
expect set_invalid_value 2 '' '{"a":1}' set a '[1,'
stderr_has set_invalid_value 'invalid VALUE: error at byte 3'
expect set_invalid_input 1 '' '{"a":1' set a 1
checks=$((checks + 1))
got=$("$TOOL" -b set /n 43 <"$TMP/doc.bin" | "$TOOL" get n)
[ "$got" = 43 ] || fail "set --binary then get: '$got'"

# --- merge / patch
expect merge_ok 0 '{"a":"z","c":{"e":1}}' '{"a":"b","c":{"d":"e"}}' merge '{"a":"z","c":{"d":null,"e":1}}'
expect merge_bad 2 '' '{}' merge '{"a":'
expect patch_ok 0 '{"foo":["bar","qux","baz"]}' '{"foo":["bar","baz"]}' patch '[{"op":"add","path":"/foo/1","value":"qux"}]'
expect patch_test_fails 1 '' '{"a":1}' patch '[{"op":"test","path":"/a","value":2}]'
stderr_has patch_test_fails 'test failed'
expect patch_bad_op 2 '' '{"a":1}' patch '[{"op":"nope","path":"/a"}]'

# --- stats
checks=$((checks + 1))
printf '%s' "$DOC" | "$TOOL" stats >"$TMP/out" 2>"$TMP/err" || fail "stats exited $?"
for f in size used garbage objects arrays scalars nodes max_depth; do
    grep -Eq "^$f +[0-9]+" "$TMP/out" || fail "stats lacks $f: $(cat "$TMP/out")"
done
checks=$((checks + 1))
got=$(printf '{"a":{"b":[1,2,{"c":"x"}]},"d":null}' | "$TOOL" --json stats)
echo "$got" | grep -q '"objects":3' || fail "stats --json objects: $got"
echo "$got" | grep -q '"arrays":1' || fail "stats --json arrays: $got"
echo "$got" | grep -q '"scalars":4' || fail "stats --json scalars: $got"
echo "$got" | grep -q '"max_depth":4' || fail "stats --json depth: $got"
echo "$got" | grep -q '"garbage":0' || fail "stats --json garbage: $got"
echo "$got" | grep -q '"bytes":{"header":32,' || fail "stats --json bytes: $got"
echo "$got" | grep -q '"other":0}' || fail "stats --json bytes other: $got"
# Garbage appears after a longer string replaces a shorter one (binary in, binary stats).
checks=$((checks + 1))
size=$(wc -c <"$TMP/doc.bin")
bsize=$("$TOOL" -b -j stats <"$TMP/doc.bin" | sed -n 's/.*"size":\([0-9]*\).*/\1/p')
[ "$bsize" = "$size" ] || fail "stats --binary size $bsize, file has $size bytes"
expect stats_corrupt 1 '' 'garbage' -b stats

# --- the packed form (--packed): smaller, decodes the same, reads and changes like the full form
SAMPLE='{"id":123456,"name":"user123456","email":"u123456@example.com","tags":["a","b"],"score":456}'
checks=$((checks + 1))
printf '%s' "$SAMPLE" | "$TOOL" --packed encode >"$TMP/p.bin" || fail "packed encode exited $?"
printf '%s' "$SAMPLE" | "$TOOL" encode >"$TMP/f.bin" || fail "encode exited $?"
[ "$(wc -c <"$TMP/p.bin")" -eq 112 ] || fail "packed sample is $(wc -c <"$TMP/p.bin") bytes, want 112"
[ "$(wc -c <"$TMP/f.bin")" -eq 368 ] || fail "full sample is $(wc -c <"$TMP/f.bin") bytes, want 368"
[ "$(od -An -tu2 -j4 -N2 "$TMP/p.bin" | tr -d ' ')" = 4 ] || fail "packed sample is not format version 4"
[ "$("$TOOL" decode <"$TMP/p.bin")" = "$SAMPLE" ] || fail "packed sample decodes differently"
checks=$((checks + 1))
[ "$("$TOOL" -b get tags.1 <"$TMP/p.bin")" = '"b"' ] || fail "get on a packed document"
checks=$((checks + 1))
got=$("$TOOL" -b set /score 7 <"$TMP/p.bin")
[ "$got" = "${SAMPLE%456\}}7}" ] || fail "set on a packed document: '$got'"
got=$("$TOOL" --packed -b -j stats <"$TMP/f.bin" 2>&1)
echo "$got" | grep -q '"used":112' || fail "--packed stats used: $got"
echo "$got" | grep -q '"p_names":20' || fail "--packed stats names: $got"
echo "$got" | grep -q '"other":0}' || fail "--packed stats other: $got"
# a document that does not pack (an object of 65 members) stays in the full form
checks=$((checks + 1))
WIDE=$(python3 -c 'import json; print(json.dumps({"k%d" % i: i for i in range(65)}, separators=(",", ":")))')
[ "$(printf '%s' "$WIDE" | "$TOOL" --packed encode | od -An -tu2 -j4 -N2 | tr -d ' ')" = 3 ] ||
    fail "a 65-member object was packed"

# --- usage errors, help, version
expect no_command 2 '' '' 
expect unknown_command 2 '' '' frobnicate
stderr_has unknown_command "unknown command"
expect get_without_path 2 '' '{}' get
expect set_one_arg 2 '' '{}' set a
expect extra_arg 2 '' '{}' check extra
expect bad_option 2 '' '{}' --frob check
expect bad_depth 2 '' '{}' --max-depth 0 check
checks=$((checks + 1))
"$TOOL" --help >"$TMP/out" 2>&1 || fail "--help exited $?"
grep -q 'usage: l3kv-doc' "$TMP/out" || fail "--help text"
checks=$((checks + 1))
ver=$("$TOOL" --version) || fail "--version exited $?"
echo "$ver" | grep -Eq '^l3kv-doc [0-9]+\.[0-9]+\.[0-9]+' || fail "--version printed '$ver'"

# --- a binary document of the previous format version (2) is read and rebuilt
FIX=$(dirname "$0")/../../tests/fixtures/doc-v2
checks=$((checks + 1))
got=$("$TOOL" --binary decode <"$FIX/doc.v2.bin") || fail "decode of a version-2 document exited $?"
[ "$got" = "$(cat "$FIX/doc.json")" ] || fail "version-2 document decoded as: $got"
checks=$((checks + 1))
# a version-2 document whose table entry lies out of its version's probe order is refused
python3 - "$FIX/doc.v2.bin" "$TMP/bad.bin" <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
# flip the stored hash of every entry whose type byte says live int (offsets are 8-aligned)
for off in range(48, len(b) - 32, 8):
    if b[off + 8] == 2 and b[off + 9:off + 12] == b"\0\0\0":
        b[off + 12] ^= 0x55
        b[off + 15] ^= 0x80
open(sys.argv[2], "wb").write(b)
PY
if "$TOOL" --binary decode <"$TMP/bad.bin" >/dev/null 2>&1; then fail "a damaged version-2 document was accepted"; fi

echo "$checks checks, $fails failed"
[ "$fails" -eq 0 ]
