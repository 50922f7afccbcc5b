#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Offline checks of tools/bench/suite/benchsuite.py: the zipfian key distribution and the
--compare logic. No timing, no processes."""
import math
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchsuite  # noqa: E402


class ZipfianTest(unittest.TestCase):
    N = 1000
    SAMPLES = 200000

    def setUp(self):
        self.seq = benchsuite.key_sequence(self.N, self.SAMPLES, seed=7)
        self.z = benchsuite.Zipfian(self.N)
        self.counts = [0] * self.N
        for k in self.seq:
            self.counts[k] += 1

    def test_range(self):
        self.assertEqual(len(self.seq), self.SAMPLES)
        self.assertGreaterEqual(min(self.seq), 0)
        self.assertLess(max(self.seq), self.N)

    def test_head_matches_zipf_law(self):
        # items 0 and 1 are drawn exactly with the Zipf probabilities: within 5 standard deviations
        for i in (0, 1):
            p = self.z.pmf(i)
            sd = math.sqrt(self.SAMPLES * p * (1 - p))
            self.assertLess(abs(self.counts[i] - self.SAMPLES * p), 5 * sd, (i, self.counts[i], p))

    def test_skew(self):
        # the hottest 1 % of the items get about their Zipf share (~41 % for n=1000, 0.99),
        # far from the uniform 1 %
        top = sum(self.counts[: self.N // 100]) / self.SAMPLES
        exact = sum(self.z.pmf(i) for i in range(self.N // 100))
        self.assertLess(abs(top - exact), 0.03, (top, exact))
        # and the frequencies fall with the rank
        self.assertGreater(self.counts[0], self.counts[1])
        self.assertGreater(sum(self.counts[:10]), sum(self.counts[10:20]))
        self.assertGreater(sum(self.counts[:100]), sum(self.counts[900:]))

    def test_deterministic(self):
        self.assertEqual(self.seq[:100], benchsuite.key_sequence(self.N, 100, seed=7))
        self.assertNotEqual(self.seq[:100], benchsuite.key_sequence(self.N, 100, seed=8))

    def test_zeta(self):
        self.assertAlmostEqual(benchsuite.zeta(2, 0.99), 1 + 0.5 ** 0.99)
        with self.assertRaises(ValueError):
            benchsuite.Zipfian(1)

    def test_last_item_reachable(self):
        z = benchsuite.Zipfian(3, rng=random.Random(3))
        self.assertEqual(set(z.next() for _ in range(5000)), {0, 1, 2})


def run(*rows):
    return {"results": [{"workload": w, "server": s, "ops": o, "p50": p99 / 2, "p99": p99} for w, s, o, p99 in rows]}


class CompareTest(unittest.TestCase):
    def test_changes(self):
        old = run(("ycsb-A", "l3kv buffered", 1000.0, 0.010), ("get-100B", "l3kv fsync", 500.0, 0.002),
                  ("gone", "l3kv fsync", 10.0, 0.1))
        new = run(("ycsb-A", "l3kv buffered", 1100.0, 0.005), ("get-100B", "l3kv fsync", 250.0, 0.002),
                  ("added", "webdis + Redis", 7.0, 0.1))
        rows = {(r["workload"], r["server"]): r for r in benchsuite.compare(old, new)}
        self.assertEqual(len(rows), 4)
        a = rows[("ycsb-A", "l3kv buffered")]
        self.assertAlmostEqual(a["ops_change"], 0.10)
        self.assertAlmostEqual(a["p99_change"], -0.5)
        self.assertAlmostEqual(rows[("get-100B", "l3kv fsync")]["ops_change"], -0.5)
        self.assertIsNone(rows[("gone", "l3kv fsync")]["new_ops"])
        self.assertIsNone(rows[("added", "webdis + Redis")]["ops_change"])
        table = benchsuite.compare_table(benchsuite.compare(old, new))
        self.assertIn("| ycsb-A | l3kv buffered | 1000 | 1100 | +10.0 % |", table)
        self.assertIn("-50.0 %", table)

    def test_zero_and_nan(self):
        rows = benchsuite.compare(run(("x", "s", 0.0, float("nan"))), run(("x", "s", 5.0, 0.1)))
        self.assertIsNone(rows[0]["ops_change"])
        self.assertIsNone(rows[0]["p99_change"])

    def test_markdown_table(self):
        res = [{"workload": "ycsb-C", "server": "l3kv fsync", "ops": 1234.4, "p50": 0.0005, "p99": 0.012,
                "x_ceiling": 0.5, "x_redis": 2.0, "rss_bytes": 100 << 20}]
        self.assertIn("| ycsb-C | l3kv fsync | 1234 | 500 µs | 12.00 ms | 0.50× | 2.00× | 100 MiB |",
                      benchsuite.markdown_table(res))


if __name__ == "__main__":
    unittest.main()
