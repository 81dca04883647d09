# Times 4 KiB ranged GETs on moto: from a 7 MB object and from a 4 KiB one,
# to tell per-request cost from per-byte cost (docs/BENCHMARKS.md, "Sliced
# blooms"). Run with the test venv: ~/.cache/skidder/venv/bin/python \
#   benches/scripts/moto_ranged_get.py
import os, socket, subprocess, time, statistics
import boto3
venv = os.path.expanduser("~/.cache/skidder/venv/bin")
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
p = subprocess.Popen([f"{venv}/moto_server", "-H", "127.0.0.1", "-p", str(port)],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    c = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                     aws_access_key_id="t", aws_secret_access_key="t")
    for _ in range(100):
        try:
            c.create_bucket(Bucket="logs"); break
        except Exception:
            time.sleep(0.1)
    c.put_object(Bucket="logs", Key="big", Body=os.urandom(7_000_000))
    c.put_object(Bucket="logs", Key="small", Body=os.urandom(4096))
    for key in ["small", "big", "small", "big"]:
        ts = []
        for i in range(50):
            t = time.perf_counter()
            c.get_object(Bucket="logs", Key=key, Range="bytes=0-4095")["Body"].read()
            ts.append((time.perf_counter() - t) * 1e3)
        print(f"{key}: median {statistics.median(ts):.2f} ms per 4 KiB ranged GET")
finally:
    p.terminate()
