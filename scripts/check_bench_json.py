#!/usr/bin/env python3
"""Checks a floe-bench JSON file against the contract in DESIGN.md.

usage: check_bench_json.py FILE [EXTRA_FIELD...]
Exits non-zero with a one-line reason when a field is missing, of the wrong type, or absurd.
Each EXTRA_FIELD must be present and positive. Beyond the contract it checks what any result
that carries them must satisfy: p90 and p99.99 in order with the other percentiles, rates that
agree with records/bytes over seconds, and (produce, consume, e2e) at least as many records
verified by the consumer as are counted, and nested produce latencies in order too.
"""
import json
import sys


def fail(msg):
    print(f"bench JSON invalid: {msg}", file=sys.stderr)
    sys.exit(1)


def check_latency(name, lat):
    if not isinstance(lat, dict):
        fail(f"missing {name!r} object")
    for key in ["p50", "p99", "p999", "max"]:
        if not isinstance(lat.get(key), (int, float)):
            fail(f"missing or non-numeric {name}.{key}")
    order = [k for k in ["p50", "p90", "p99", "p999", "p9999", "max"] if k in lat]
    values = [lat[k] for k in order]
    if any(not isinstance(v, (int, float)) or v < 0 for v in values):
        fail(f"{name} has a non-numeric or negative percentile: {lat}")
    if values != sorted(values):
        fail(f"{name} percentiles not ordered: {lat}")


def close(a, b):
    return abs(a - b) <= 0.01 * max(abs(a), abs(b), 1e-9)


def main():
    if len(sys.argv) < 2:
        fail("no file given")
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    if not isinstance(doc, dict):
        fail("not a JSON object")
    for key in ["records", "bytes", "seconds", "records_per_sec", "mb_per_sec"]:
        if not isinstance(doc.get(key), (int, float)):
            fail(f"missing or non-numeric {key!r}")
        if doc[key] <= 0:
            fail(f"{key!r} is {doc[key]}, expected > 0")
    check_latency("latency_us", doc.get("latency_us"))
    mb = doc["bytes"] / 1e6 / doc["seconds"]
    if not close(mb, doc["mb_per_sec"]):
        fail(f"mb_per_sec {doc['mb_per_sec']} disagrees with bytes/seconds {mb}")
    rps = doc["records"] / doc["seconds"]
    if not close(rps, doc["records_per_sec"]):
        fail(f"records_per_sec {doc['records_per_sec']} disagrees with records/seconds {rps}")
    if "verified_records" in doc and doc["verified_records"] < doc["records"]:
        fail(f"verified_records {doc['verified_records']} < records {doc['records']}")
    if "produce_latency_us" in doc:
        check_latency("produce_latency_us", doc["produce_latency_us"])
    for key in sys.argv[2:]:
        if not isinstance(doc.get(key), (int, float)) or doc[key] <= 0:
            fail(f"missing or non-positive {key!r}")
    print(f"bench JSON ok: {doc['records']} records, {doc['mb_per_sec']:.1f} MB/s")


if __name__ == "__main__":
    main()
