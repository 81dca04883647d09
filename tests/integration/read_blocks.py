"""Reads Skidder data blocks with Hadoop's own SequenceFile reader (through
PySpark) and checks that the records equal the expected ones.

usage: read_blocks.py BLOCK_DIR_OR_GLOB EXPECTED_JSONL
A BLOCK_DIR reads BLOCK_DIR/*.seq; a path holding `*` is the glob itself.
EXPECTED_JSONL holds one {"time_ns": "...", "line": "..."} per record.
Exits 0 when every record matches, exactly once; 1 otherwise.
"""
import json
import sys
from collections import Counter

from pyspark import SparkConf, SparkContext


def main():
    block_dir, expected_path = sys.argv[1], sys.argv[2]
    pattern = block_dir if "*" in block_dir else block_dir + "/*.seq"
    conf = (
        SparkConf()
        .setMaster("local[1]")
        .setAppName("skidder-hadoop-read")
        .set("spark.ui.enabled", "false")
    )
    sc = SparkContext(conf=conf)
    sc.setLogLevel("ERROR")
    try:
        got = Counter(
            (int(k), v) for k, v in sc.sequenceFile(pattern).collect()
        )
    finally:
        sc.stop()
    want = Counter()
    with open(expected_path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            want[(int(r["time_ns"]), r["line"])] += 1
    if got != want:
        missing = want - got
        extra = got - want
        print(f"MISMATCH: {sum(missing.values())} missing, {sum(extra.values())} unexpected")
        for r in list(missing)[:3]:
            print("  missing:", r)
        for r in list(extra)[:3]:
            print("  unexpected:", r)
        return 1
    print(f"OK: Hadoop read {sum(got.values())} records from {block_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
