#!/usr/bin/env python3
"""S3 clients no one here wrote (boto3, awscli) against examples/s3_gateway.rs and, as the
baseline, against s3s-fs directly (examples/s3s_fs_server.rs). Run by benches/s3_clients.sh,
which starts the three servers; not part of `cargo test`.

Prints one line per measurement; BENCHMARKS.md ("S3 clients through the gateway") keeps them.
"""
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time

import boto3
from botocore.config import Config

GATEWAY, S3S, ORIGIN_LOG, ORIGIN_DIR, MERGING = sys.argv[1:6]
KEY, SECRET, BUCKET = "bench", "bench-secret-key", "media"


def client(endpoint):
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )


def origin_gets(path):
    with open(ORIGIN_LOG) as f:
        return sum(1 for line in f if f'"GET /{path} ' in line)


def timed(fn, n):
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out), max(out)


def md5(data):
    return hashlib.md5(data).hexdigest()


def main():
    gw, fs = client(GATEWAY), client(S3S)
    small = open(os.path.join(ORIGIN_DIR, "small/0.bin"), "rb").read()
    # Hit: a stored 1 MiB object, 50 GETs each.
    gw.get_object(Bucket=BUCKET, Key="small/0.bin")["Body"].read()  # pull it once
    for name, c in (("s3s-fs direct", fs), ("gateway", gw)):
        med, worst = timed(lambda i: c.get_object(Bucket=BUCKET, Key="small/0.bin")["Body"].read(), 50)
        print(f"boto3 get_object 1 MiB stored, {name}: median {med:.1f} ms, max {worst:.1f} ms")
    # Cold: 20 keys never asked before (gateway pulls each; s3s-fs has them).
    def cold(i):
        body = gw.get_object(Bucket=BUCKET, Key=f"small/{i + 1}.bin")["Body"].read()
        assert len(body) == len(small)
    med, worst = timed(cold, 20)
    print(f"boto3 get_object 1 MiB cold (pulled), gateway: median {med:.1f} ms, max {worst:.1f} ms; "
          f"origin GETs per key: {max(origin_gets(f'small/{i + 1}.bin') for i in range(20))}")
    med, worst = timed(lambda i: fs.get_object(Bucket=BUCKET, Key=f"small/{i + 1}.bin")["Body"].read(), 20)
    print(f"boto3 get_object 1 MiB, s3s-fs direct: median {med:.1f} ms, max {worst:.1f} ms")
    # HEAD of a cold key, then GET.
    head = gw.head_object(Bucket=BUCKET, Key="small/30.bin")
    body = gw.get_object(Bucket=BUCKET, Key="small/30.bin")["Body"].read()
    print(f"boto3 head_object then get_object cold: size {head['ContentLength']}, bytes equal "
          f"{body == open(os.path.join(ORIGIN_DIR, 'small/30.bin'), 'rb').read()}, origin GETs {origin_gets('small/30.bin')}")
    # download_file of a cold 64 MiB object: boto3 splits it into parallel ranged GETs.
    big = open(os.path.join(ORIGIN_DIR, "big.bin"), "rb").read()
    with tempfile.TemporaryDirectory() as d:
        for name, c in (("gateway cold", gw), ("gateway stored", gw), ("s3s-fs direct", fs)):
            t = time.perf_counter()
            c.download_file(BUCKET, "big.bin", os.path.join(d, "big"))
            ms = (time.perf_counter() - t) * 1000
            ok = md5(open(os.path.join(d, "big"), "rb").read()) == md5(big)
            print(f"boto3 download_file 64 MiB, {name}: {ms:.0f} ms ({64 / ms * 1000:.0f} MiB/s), bytes equal {ok}")
    print(f"origin GETs of big.bin: {origin_gets('big.bin')} (each a whole-object GET: the origin sent {origin_gets('big.bin')}x the bytes)")
    # awscli: cp of a cold key, and of the same key stored.
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1")
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    with tempfile.TemporaryDirectory() as d:
        for name, endpoint in (("gateway cold", GATEWAY), ("gateway stored", GATEWAY), ("s3s-fs direct", S3S)):
            t = time.perf_counter()
            subprocess.run([aws, "--endpoint-url", endpoint, "s3", "cp", f"s3://{BUCKET}/small/40.bin", d + "/x"],
                           env=env, check=True, capture_output=True)
            print(f"aws s3 cp 1 MiB, {name}: {(time.perf_counter() - t) * 1000:.0f} ms (process start included)")
    # aws s3 sync down: over stored keys (the HTTP-origin gateway lists what it holds), and
    # over cold keys with list_merge on a bucket origin (file:// here).
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        subprocess.run([aws, "--endpoint-url", GATEWAY, "s3", "sync", f"s3://{BUCKET}/small/", d],
                       env=env, check=True, capture_output=True)
        print(f"aws s3 sync down, stored keys: {len(os.listdir(d))} files, {(time.perf_counter() - t) * 1000:.0f} ms")
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        subprocess.run([aws, "--endpoint-url", MERGING, "s3", "sync", f"s3://{BUCKET}/small/", d],
                       env=env, check=True, capture_output=True)
        same = all(open(os.path.join(d, n), "rb").read() == open(os.path.join(ORIGIN_DIR, "small", n), "rb").read()
                   for n in os.listdir(d))
        print(f"aws s3 sync down, cold keys listed by list_merge (bucket origin): {len(os.listdir(d))} files "
              f"(origin has {len(os.listdir(os.path.join(ORIGIN_DIR, 'small')))}), bytes equal {same}, "
              f"{(time.perf_counter() - t) * 1000:.0f} ms")
    # rclone (an `s3` remote, provider Other): copy down a cold key, copy up a directory.
    rclone = dict(os.environ, RCLONE_CONFIG_GW_TYPE="s3", RCLONE_CONFIG_GW_PROVIDER="Other",
                  RCLONE_CONFIG_GW_ENDPOINT=GATEWAY, RCLONE_CONFIG_GW_ACCESS_KEY_ID=KEY,
                  RCLONE_CONFIG_GW_SECRET_ACCESS_KEY=SECRET, RCLONE_CONFIG_GW_LIST_VERSION="2",
                  RCLONE_CONFIG_GW_NO_CHECK_BUCKET="true", RCLONE_CONFIG_GW_FORCE_PATH_STYLE="true")
    rclone.pop("AWS_CA_BUNDLE", None)  # rclone refuses a CA bundle with its own transport
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        subprocess.run(["rclone", "copy", f"gw:{BUCKET}/small/55.bin", d], env=rclone, check=True,
                       capture_output=True)
        down = open(os.path.join(d, "55.bin"), "rb").read() == open(os.path.join(ORIGIN_DIR, "small/55.bin"), "rb").read()
        print(f"rclone copy down 1 MiB cold: {(time.perf_counter() - t) * 1000:.0f} ms, bytes equal {down}, "
              f"origin GETs {origin_gets('small/55.bin')}")
        os.makedirs(os.path.join(d, "up"))
        for i in range(5):
            with open(os.path.join(d, "up", f"{i}.txt"), "wb") as f:
                f.write(os.urandom(100_000))
        t = time.perf_counter()
        subprocess.run(["rclone", "copy", os.path.join(d, "up"), f"gw:{BUCKET}/rclone-up"], env=rclone,
                       check=True, capture_output=True)
        listed = sorted(o["Key"] for o in gw.list_objects_v2(Bucket=BUCKET, Prefix="rclone-up/")["Contents"])
        same = all(gw.get_object(Bucket=BUCKET, Key=f"rclone-up/{i}.txt")["Body"].read()
                   == open(os.path.join(d, "up", f"{i}.txt"), "rb").read() for i in range(5))
        print(f"rclone copy up 5 files: {(time.perf_counter() - t) * 1000:.0f} ms, listed {len(listed)}, bytes equal {same}")
    # put + list + delete + get: the deleted key stays deleted, the origin not asked again.
    gw.put_object(Bucket=BUCKET, Key="up/new.txt", Body=b"hello")
    keys = [o["Key"] for o in gw.list_objects_v2(Bucket=BUCKET, Prefix="up/")["Contents"]]
    gw.get_object(Bucket=BUCKET, Key="small/50.bin")["Body"].read()
    gw.delete_object(Bucket=BUCKET, Key="small/50.bin")
    try:
        gw.get_object(Bucket=BUCKET, Key="small/50.bin")
        gone = False
    except gw.exceptions.NoSuchKey:
        gone = True
    print(f"boto3 put/list/delete: listed {keys}, deleted key stays deleted {gone}, origin GETs {origin_gets('small/50.bin')}")
    # Wrong secret: SignatureDoesNotMatch, nothing served.
    bad = boto3.client("s3", endpoint_url=GATEWAY, aws_access_key_id=KEY, aws_secret_access_key="wrong",
                       region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
    try:
        bad.get_object(Bucket=BUCKET, Key="small/60.bin")
        code = "served!"
    except Exception as e:  # botocore ClientError
        code = getattr(e, "response", {}).get("Error", {}).get("Code", str(e))
    print(f"boto3 wrong secret: {code}, origin GETs {origin_gets('small/60.bin')}")


main()
