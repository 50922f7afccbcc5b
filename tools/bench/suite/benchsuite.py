# SPDX-License-Identifier: MIT
"""Pure functions of the benchmark suite (tools/bench/suite/l3kv-bench-suite.py), kept free of
processes and sockets so that test-benchsuite.py can check them offline:

- Zipfian: the YCSB zipfian generator (Gray et al., "Quickly generating billion-record
  synthetic databases", SIGMOD 1994, as used by YCSB's ZipfianGenerator), constant 0.99;
  item 0 is the most popular.
- key_sequence(): a precomputed sequence of zipfian key numbers; the wrk Lua scripts read it
  so the load generator draws exactly the keys this module produced.
- compare(): the change of every figure of one run against an earlier run's JSON.
- markdown_table(): the result table.
"""
import math
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "http"))
import benchlib  # noqa: E402  (fmt_s)

ZIPF_THETA = 0.99


def zeta(n, theta):
    """sum_{i=1..n} 1 / i^theta."""
    return math.fsum(1.0 / math.pow(i, theta) for i in range(1, n + 1))


class Zipfian:
    """Items 0..n-1; P(item i) ~ 1 / (i+1)^theta (YCSB ZipfianGenerator.nextLong)."""

    def __init__(self, n, theta=ZIPF_THETA, rng=None):
        if n < 2:
            raise ValueError("zipfian needs at least 2 items")
        self.n = n
        self.theta = theta
        self.rng = rng or random.Random(1)
        self.zetan = zeta(n, theta)
        self.zeta2 = zeta(2, theta)
        self.alpha = 1.0 / (1.0 - theta)
        self.eta = (1.0 - math.pow(2.0 / n, 1.0 - theta)) / (1.0 - self.zeta2 / self.zetan)
        self.half_pow_theta = 1.0 + math.pow(0.5, theta)

    def next(self):
        u = self.rng.random()
        uz = u * self.zetan
        if uz < 1.0:
            return 0
        if uz < self.half_pow_theta:
            return 1
        v = int(self.n * math.pow(self.eta * u - self.eta + 1.0, self.alpha))
        return min(v, self.n - 1)

    def pmf(self, i):
        """Exact probability of item i under the ideal Zipf law."""
        return 1.0 / math.pow(i + 1, self.theta) / self.zetan


def key_sequence(n, length, seed=1, theta=ZIPF_THETA):
    """length zipfian key numbers in 0..n-1."""
    z = Zipfian(n, theta, random.Random(seed))
    return [z.next() for _ in range(length)]


def _change(old, new):
    if old is None or new is None or old != old or new != new or old == 0:
        return None
    return (new - old) / old


def compare(old, new):
    """Rows (workload, server, old ops/s, new ops/s, ops change, old p99, new p99, p99 change) for
    every (workload, server) present in both runs; changes are fractions (0.1 = +10 %), None
    when not computable. Rows only in one run are listed with None on the other side."""
    def index(run):
        return {(r["workload"], r["server"]): r for r in run.get("results", [])}
    o, n = index(old), index(new)
    rows = []
    for key in list(n.keys()) + [k for k in o.keys() if k not in n]:
        a, b = o.get(key), n.get(key)
        rows.append({"workload": key[0], "server": key[1],
                     "old_ops": a["ops"] if a else None, "new_ops": b["ops"] if b else None,
                     "ops_change": _change(a["ops"], b["ops"]) if a and b else None,
                     "old_p99": a["p99"] if a else None, "new_p99": b["p99"] if b else None,
                     "p99_change": _change(a["p99"], b["p99"]) if a and b else None})
    return rows


def fmt_pct(x):
    return "n/a" if x is None else "%+.1f %%" % (100.0 * x)


def fmt_s(x):
    return "n/a" if x is None else benchlib.fmt_s(x, micro="µs")


def fmt_ratio(x):
    return "" if x is None else "%.2f×" % x


def fmt_mib(n):
    return "" if not n else "%.0f MiB" % (n / 1048576.0)


def markdown_table(results):
    lines = ["| workload | server | ops/s | p50 | p99 | × ceiling | × Redis | server RSS |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append("| %s | %s | %.0f | %s | %s | %s | %s | %s |" % (
            r["workload"], r["server"], r["ops"], fmt_s(r["p50"]), fmt_s(r["p99"]),
            fmt_ratio(r.get("x_ceiling")), fmt_ratio(r.get("x_redis")), fmt_mib(r.get("rss_bytes"))))
    return "\n".join(lines)


def compare_table(rows):
    lines = ["| workload | server | old ops/s | new ops/s | change | old p99 | new p99 | p99 change |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["workload"], r["server"],
            "n/a" if r["old_ops"] is None else "%.0f" % r["old_ops"],
            "n/a" if r["new_ops"] is None else "%.0f" % r["new_ops"],
            fmt_pct(r["ops_change"]), fmt_s(r["old_p99"]), fmt_s(r["new_p99"]), fmt_pct(r["p99_change"])))
    return "\n".join(lines)
