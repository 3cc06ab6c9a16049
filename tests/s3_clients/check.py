"""Run by tests/s3_front.rs `real_s3_clients`: boto3, awscli and rclone against a gateway.

argv: ENDPOINT ACCESS SECRET BUCKET WORKDIR. Prints one JSON object of observations; the
Rust test asserts on them (and on the origin's request counts).
"""
import json
import os
import shutil
import subprocess
import sys

import boto3
from botocore.config import Config

ENDPOINT, ACCESS, SECRET, BUCKET, WORK = sys.argv[1:6]
out = {}


def run(args, env):
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{args} failed: {done.stderr}")


def client(secret):
    return boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id=ACCESS,
                        aws_secret_access_key=secret, region_name="us-east-1",
                        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))


s3 = client(SECRET)
out["get_cold"] = s3.get_object(Bucket=BUCKET, Key="cold/get.bin")["Body"].read().hex()
out["head_cold"] = s3.head_object(Bucket=BUCKET, Key="cold/head.bin")["ContentLength"]
big = os.path.join(WORK, "big.bin")
s3.download_file(BUCKET, "cold/big.bin", big)
out["download_file"] = os.path.getsize(big)
s3.put_object(Bucket=BUCKET, Key="up/new.txt", Body=b"hello")
out["listed"] = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="up/")["Contents"]]
s3.get_object(Bucket=BUCKET, Key="cold/deleted.bin")["Body"].read()
s3.delete_object(Bucket=BUCKET, Key="cold/deleted.bin")
try:
    s3.get_object(Bucket=BUCKET, Key="cold/deleted.bin")
    out["deleted"] = "served"
except s3.exceptions.NoSuchKey:
    out["deleted"] = "NoSuchKey"
try:
    client("wrong-secret").get_object(Bucket=BUCKET, Key="cold/secret.bin")
    out["wrong_secret"] = "served"
except Exception as e:  # botocore's ClientError
    out["wrong_secret"] = e.response["Error"]["Code"]

env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY=SECRET,
           AWS_DEFAULT_REGION="us-east-1")
aws = os.path.join(os.path.dirname(sys.executable), "aws")
run([aws, "--endpoint-url", ENDPOINT, "s3", "cp", f"s3://{BUCKET}/cold/cp.bin",
     os.path.join(WORK, "cp.bin")], env)
out["aws_cp"] = os.path.getsize(os.path.join(WORK, "cp.bin"))
sync = os.path.join(WORK, "sync")
run([aws, "--endpoint-url", ENDPOINT, "s3", "sync", f"s3://{BUCKET}/up/", sync], env)
out["aws_sync"] = sorted(os.listdir(sync))

if shutil.which("rclone"):
    rc = dict(os.environ, RCLONE_CONFIG_GW_TYPE="s3", RCLONE_CONFIG_GW_PROVIDER="Other",
              RCLONE_CONFIG_GW_ENDPOINT=ENDPOINT, RCLONE_CONFIG_GW_ACCESS_KEY_ID=ACCESS,
              RCLONE_CONFIG_GW_SECRET_ACCESS_KEY=SECRET, RCLONE_CONFIG_GW_LIST_VERSION="2",
              RCLONE_CONFIG_GW_NO_CHECK_BUCKET="true", RCLONE_CONFIG_GW_FORCE_PATH_STYLE="true")
    rc.pop("AWS_CA_BUNDLE", None)  # rclone refuses a CA bundle with its own transport
    down = os.path.join(WORK, "rclone-down")
    run(["rclone", "copy", f"gw:{BUCKET}/cold/rclone.bin", down], rc)
    out["rclone_down"] = os.path.getsize(os.path.join(down, "rclone.bin"))
    up = os.path.join(WORK, "rclone-up")
    os.makedirs(up)
    for i in range(3):
        with open(os.path.join(up, f"{i}.txt"), "w") as f:
            f.write(f"file {i}")
    run(["rclone", "copy", up, f"gw:{BUCKET}/rclone-up"], rc)
    out["rclone_up"] = [s3.get_object(Bucket=BUCKET, Key=f"rclone-up/{i}.txt")["Body"].read().decode()
                        for i in range(3)]
print(json.dumps(out))
