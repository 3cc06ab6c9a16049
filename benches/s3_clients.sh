#!/usr/bin/env bash
# boto3 and awscli against examples/s3_gateway.rs (pulling from a python http.server origin)
# and against s3s-fs directly. Not part of `cargo test`. Needs:
#   python3 -m venv /tmp/venv && /tmp/venv/bin/pip install boto3 awscli
#   cargo build --release --all-features --example s3_gateway --example s3s_fs_server
set -euo pipefail
VENV=${VENV:-/tmp/venv}
BIN=${CARGO_TARGET_DIR:-target}/release/examples
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/origin/small" "$WORK/fs/media/small" "$WORK/store"
for i in $(seq 0 60); do head -c 1048576 /dev/urandom > "$WORK/origin/small/$i.bin"; done
head -c 67108864 /dev/urandom > "$WORK/origin/big.bin"
cp -r "$WORK/origin/." "$WORK/fs/media/"
(cd "$WORK/origin" && exec python3 -m http.server 18090 --bind 127.0.0.1) 2> "$WORK/origin.log" &
BENCH_SECRET=bench-secret-key "$BIN/s3_gateway" --listen 127.0.0.1:18091 \
  --store "file://$WORK/store" --bucket media --origin http://127.0.0.1:18090/ \
  --access-key bench --secret-key-env BENCH_SECRET > /dev/null &
mkdir -p "$WORK/store2"
BENCH_SECRET=bench-secret-key "$BIN/s3_gateway" --listen 127.0.0.1:18093 \
  --store "file://$WORK/store2" --bucket media --origin "file://$WORK/origin" --list-merge \
  --access-key bench --secret-key-env BENCH_SECRET > /dev/null &
"$BIN/s3s_fs_server" 127.0.0.1:18092 "$WORK/fs" bench bench-secret-key > /dev/null &
sleep 1
"$VENV/bin/python" "$(dirname "$0")/s3_clients.py" http://127.0.0.1:18091 http://127.0.0.1:18092 \
  "$WORK/origin.log" "$WORK/origin" http://127.0.0.1:18093
