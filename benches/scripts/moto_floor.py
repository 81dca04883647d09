# The least a cold needle can cost on moto: one LIST per hour in range
# (the searcher finds blocks only by listing) plus one small GET for the
# block's index and one for its data. Fills a bucket shaped like the 5 GB
# benchmark store (5 hours, 264 blocks an hour, an index and a data object
# each, plus a pack and a sliced-bloom object per hour), then times a LIST
# of one hour and a 4 KiB ranged GET (docs/BENCHMARKS.md, "The floor on
# moto"). Run with the test venv: ~/.cache/skidder/venv/bin/python \
#   benches/scripts/moto_floor.py
import statistics, time, urllib.parse, urllib.request
from concurrent.futures import ThreadPoolExecutor
from moto_helper import moto_bucket

HOURS, BLOCKS = 5, 264
with moto_bucket() as (c, port):
    def prefix(h):
        return f"tenant=default/dt=2026-11-20/hour={h:02}/"
    for h in range(HOURS):
        for b in range(BLOCKS):
            name = f"{prefix(h)}app=svc{b % 12}/logs-{b % 4}-{b * 7919:020}-{b * 7919 + 4100:020}"
            c.put_object(Bucket="logs", Key=name + ".idx", Body=b"i" * 64)
            c.put_object(Bucket="logs", Key=name + ".seq", Body=b"s" * 64)
        c.put_object(Bucket="logs", Key=prefix(h) + "_pack-0-0123456789abcdef.skp", Body=b"p")
        c.put_object(Bucket="logs", Key=prefix(h) + "_slices-0123456789abcdef.skbs", Body=b"b" * 8192)
    # Raw HTTP, so that boto3's own XML parsing is not counted.
    def list_hour(h):
        url = f"http://127.0.0.1:{port}/logs?list-type=2&prefix={urllib.parse.quote(prefix(h))}"
        body = urllib.request.urlopen(url).read()
        assert body.count(b"<Key>") == 2 * BLOCKS + 2, body[:200]
    for _ in range(2):
        lists, gets, together = [], [], []
        for i in range(20):
            t = time.perf_counter()
            list_hour(i % HOURS)
            lists.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            c.get_object(Bucket="logs", Key=prefix(i % HOURS) + "_slices-0123456789abcdef.skbs",
                         Range="bytes=0-4095")["Body"].read()
            gets.append((time.perf_counter() - t) * 1e3)
        for i in range(5):
            # The searcher lists the hours side by side.
            t = time.perf_counter()
            with ThreadPoolExecutor(HOURS) as pool:
                list(pool.map(list_hour, range(HOURS)))
            together.append((time.perf_counter() - t) * 1e3)
        l, g, a = statistics.median(lists), statistics.median(gets), statistics.median(together)
        print(f"LIST of one hour ({2 * BLOCKS + 2} keys): median {l:.1f} ms; "
              f"{HOURS} hours listed side by side: median {a:.1f} ms; "
              f"4 KiB ranged GET: median {g:.2f} ms; "
              f"floor ({HOURS} LISTs side by side + 2 GETs): {a + 2 * g:.0f} ms")
