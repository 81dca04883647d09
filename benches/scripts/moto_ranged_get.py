# Times 4 KiB ranged GETs on moto: from a 7 MB object and from a 4 KiB one,
# to tell per-request cost from per-byte cost (docs/BENCHMARKS.md, "Sliced
# blooms"). Run with the test venv: ~/.cache/skidder/venv/bin/python \
#   benches/scripts/moto_ranged_get.py
import os, statistics, time
from moto_helper import moto_bucket

with moto_bucket() as (c, port):
    c.put_object(Bucket="logs", Key="big", Body=os.urandom(7_000_000))
    c.put_object(Bucket="logs", Key="small", Body=os.urandom(4096))
    for key in ["small", "big", "small", "big"]:
        ts = []
        for i in range(50):
            t = time.perf_counter()
            c.get_object(Bucket="logs", Key=key, Range="bytes=0-4095")["Body"].read()
            ts.append((time.perf_counter() - t) * 1e3)
        print(f"{key}: median {statistics.median(ts):.2f} ms per 4 KiB ranged GET")
