#!/usr/bin/env python3
"""Checks a floe-bench JSON file against the contract in DESIGN.md.

usage: check_bench_json.py FILE [EXTRA_FIELD...]
Exits non-zero with a one-line reason when a field is missing, of the wrong type, or absurd.
"""
import json
import sys


def fail(msg):
    print(f"bench JSON invalid: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) < 2:
        fail("no file given")
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    for key in ["records", "bytes", "seconds", "records_per_sec", "mb_per_sec"]:
        if not isinstance(doc.get(key), (int, float)):
            fail(f"missing or non-numeric {key!r}")
        if doc[key] <= 0:
            fail(f"{key!r} is {doc[key]}, expected > 0")
    lat = doc.get("latency_us")
    if not isinstance(lat, dict):
        fail("missing 'latency_us' object")
    for key in ["p50", "p99", "p999", "max"]:
        if not isinstance(lat.get(key), (int, float)):
            fail(f"missing or non-numeric latency_us.{key}")
    if not lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"]:
        fail(f"latency percentiles not ordered: {lat}")
    mb = doc["bytes"] / 1e6 / doc["seconds"]
    if abs(mb - doc["mb_per_sec"]) > 0.01 * max(mb, 1e-9):
        fail(f"mb_per_sec {doc['mb_per_sec']} disagrees with bytes/seconds {mb}")
    for key in sys.argv[2:]:
        if not isinstance(doc.get(key), (int, float)) or doc[key] <= 0:
            fail(f"missing or non-positive {key!r}")
    print(f"bench JSON ok: {doc['records']} records, {doc['mb_per_sec']:.1f} MB/s")


if __name__ == "__main__":
    main()
