#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Print every skipped test with its reason and fail when one is not allowed.

Reads meson's testlog.json (default build/meson-logs/testlog.json): a meson test that
exited 77 is a skip (its reason is the last lines of its output); inside the pytest-based
tests (integration, deploy), every "SKIPPED [n] file:line: reason" line of pytest's -rs
summary is a skip. A test that meson reports as SKIP also counts when it printed nothing.

.ci/allowed-skips lists the skips that are acceptable on the CI machine, one per line:
`<substring of the test name or pytest location> | <why it is acceptable>`; '#' starts a
comment. Any other skip makes this script exit 1, so a test CI is meant to run cannot go
missing silently (a dependency that stopped installing, a probe that went wrong).
Usage: skips.py [testlog.json ...]
"""
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def allowed():
    out = []
    path = os.path.join(HERE, "allowed-skips")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if line:
                    pat, _, why = line.partition("|")
                    out.append((pat.strip(), why.strip()))
    return out


def skips(logs):
    found = []
    for log in logs:
        with open(log) as f:
            for line in f:
                t = json.loads(line)
                text = (t.get("stdout") or "") + (t.get("stderr") or "")
                if t.get("result") == "SKIP":
                    tail = [l for l in text.splitlines() if l.strip()][-3:]
                    found.append((t["name"], " / ".join(tail) or "(no reason printed)"))
                for m in re.finditer(r"^SKIPPED \[\d+\] (\S+?):?(\d+)?: (.*)$", text, re.M):
                    found.append(("%s: %s:%s" % (t["name"], m.group(1), m.group(2) or "?"), m.group(3)))
    return found


def main(argv):
    logs = argv[1:] or ["build/meson-logs/testlog.json"]
    allow = allowed()
    bad = 0
    found = skips(logs)
    print("skipped tests: %d" % len(found))
    for name, reason in found:
        ok = [why for pat, why in allow if pat in name]
        print("  %s %s -- %s%s" % ("allowed" if ok else "NOT ALLOWED", name, reason,
                                   (" (allowed: %s)" % ok[0]) if ok else ""))
        bad += not ok
    if bad:
        print("ci: %d skipped test(s) CI is meant to run; install what they need or allow-list them "
              "in .ci/allowed-skips with the reason" % bad)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
