#!/usr/bin/env python3
"""Writes the small seed corpora in seeds/<target>/ from the frozen v1 golden
files and a handful of LogQL queries. Rerun after the golden files change."""

import shutil
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOLDEN = HERE.parent / "common" / "tests" / "golden" / "v1"
SEEDS = HERE / "seeds"


def u32_str(body, pos):
    n = struct.unpack_from("<I", body, pos)[0]
    return pos + 4 + n


def bloom_of(idx):
    """The bloom filter bytes inside an index object (docs/FORMAT.md)."""
    body = idx[12:-4]
    pos = 8 * 4                      # min, max time, record count, raw bytes
    pos = u32_str(body, pos)         # tenant
    pos = u32_str(body, pos)         # app
    pos += 8                         # hour
    pos = u32_str(body, pos)         # topic
    pos += 4 + 8 + 8                 # partition, first, last offset
    pos = u32_str(body, pos)         # data key
    pos += 8 + 4                     # data size, data CRC
    (streams,) = struct.unpack_from("<I", body, pos)
    pos += 4
    for _ in range(streams):
        pos += 4 + 4 + 8 + 8
        (labels,) = struct.unpack_from("<I", body, pos)
        pos += 4
        for _ in range(2 * labels):
            pos = u32_str(body, pos)
    (n,) = struct.unpack_from("<I", body, pos)
    return body[pos + 4 : pos + 4 + n]


def vlong(buf, pos):
    """Hadoop WritableUtils.readVLong; returns (value, new position)."""
    first = struct.unpack_from("b", buf, pos)[0]
    if first >= -112:
        return first, pos + 1
    negative = first < -120
    n = -(first + 120) if negative else -(first + 112)
    v = int.from_bytes(buf[pos + 1 : pos + 1 + n], "big")
    return (~v if negative else v), pos + 1 + n


def lz4_streams_of(seq):
    """The four Lz4Codec streams of the first record block of a SequenceFile."""
    pos = 4                                          # "SEQ", version
    for _ in range(2):                               # key and value class
        n, pos = vlong(seq, pos)
        pos += n
    pos += 2                                         # compressed, block-compressed
    n, pos = vlong(seq, pos)                         # codec
    pos += n
    (meta,) = struct.unpack_from(">i", seq, pos)
    pos += 4
    for _ in range(2 * meta):
        n, pos = vlong(seq, pos)
        pos += n
    pos += 16                                        # sync
    pos += 4 + 16                                    # sync escape, sync
    _, pos = vlong(seq, pos)                         # record count
    out = []
    for _ in range(4):
        n, pos = vlong(seq, pos)
        out.append(seq[pos : pos + n])
        pos += n
    return out


QUERIES = [
    '{app="checkout"}',
    '{__app__="checkout", level!="debug", pod=~"api-.*", ns!~"kube.*"}',
    '{app="a"} |= "error" != "timeout" |~ "5\\\\d\\\\d" !~ `(?i)health`',
    '{app="a"} | json | status >= 500 and method="GET" or (path=~"/api/.*", latency_ms < 10.5)',
    '{app="a"} | logfmt | line_format "{{.msg}}" | drop __error__, x',
    'sum by (level, detected_level) (count_over_time({app="a"} |= "x" [1m]))',
    'sum(rate({app="a"}[5m])) by (pod)',
    'topk(3, sum by (app) (bytes_over_time({app=~".+"}[1h])))',
    'avg without (pod) (bytes_rate({app="a"}[30s]))',
    'vector(1)+vector(1)',
    'sum(rate({app="a"}[1h30m])) * 60 / 2 - 1',
    '{app="a"}\n | trace_id="abc123"',
]


def main():
    idx = (GOLDEN / "block.idx").read_bytes()
    seq = (GOLDEN / "block.seq").read_bytes()
    for target in ["logql_parse", "index_decode", "seqfile_decode", "pack_decode", "slices_decode", "manifest_decode"]:
        shutil.rmtree(SEEDS / target, ignore_errors=True)
        (SEEDS / target).mkdir(parents=True)
    for i, q in enumerate(QUERIES):
        (SEEDS / "logql_parse" / f"query-{i:02}").write_text(q)
    (SEEDS / "index_decode" / "golden-v1.idx").write_bytes(idx)
    (SEEDS / "index_decode" / "golden-v1.bloom").write_bytes(bloom_of(idx))
    # Version 3 adds the record-offsets column after the bloom filter.
    (SEEDS / "index_decode" / "golden-v3.idx").write_bytes((GOLDEN.parent / "v3" / "block.idx").read_bytes())
    (SEEDS / "seqfile_decode" / "golden-v1.seq").write_bytes(seq)
    (SEEDS / "pack_decode" / "golden-v1.pack").write_bytes((GOLDEN / "hour.pack").read_bytes())
    (SEEDS / "slices_decode" / "golden-v1.slices").write_bytes((GOLDEN / "hour.slices").read_bytes())
    (SEEDS / "manifest_decode" / "golden-v1.mf").write_bytes((GOLDEN / "hour.mf").read_bytes())
    for i, stream in enumerate(lz4_streams_of(seq)):
        (SEEDS / "seqfile_decode" / f"golden-v1-buffer-{i}.lz4").write_bytes(stream)


if __name__ == "__main__":
    main()
