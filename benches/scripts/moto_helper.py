# Starts a moto server from the test venv on a free port, with a bucket
# `logs`, for the timing scripts beside this file.
import contextlib, os, socket, subprocess, time
import boto3

VENV = os.path.expanduser("~/.cache/skidder/venv/bin")


@contextlib.contextmanager
def moto_bucket():
    """Yields (boto3 client, port) while a moto server runs."""
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    p = subprocess.Popen([f"{VENV}/moto_server", "-H", "127.0.0.1", "-p", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        c = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                         aws_access_key_id="t", aws_secret_access_key="t")
        for _ in range(100):
            try:
                c.create_bucket(Bucket="logs"); break
            except Exception:
                time.sleep(0.1)
        yield c, port
    finally:
        p.terminate()
