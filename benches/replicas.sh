#!/usr/bin/env bash
# Three mirror replicas on one file:// store behind nginx `hash $uri consistent`
# (benches/replicas/nginx.conf, the config of the README's "Running more than one replica").
#
#   benches/replicas.sh
#
# Round 1: 300 concurrent cold GETs over 30 keys (1 MiB each, the origin sends each over
# ~200 ms) → origin fetches (expect 30: every key on one replica, coalesced there).
# Round 2: 300 concurrent cold GETs over 30 new keys; replica 3 is killed (`kill -9`)
# KILL_AFTER seconds in (0.15) → every answer is the right body (sha256) or an error, never
# a wrong or short 200; the keys that got an error are asked once more (now on another
# replica) → right, and origin fetches ≤ 30 + the keys that moved.
# Needs: cargo, python3, curl, nginx (nginx-light is installed with apt-get if missing).
# Ports: 18480 (nginx), 18481-18483 (replicas), 18490 (origin).
set -euo pipefail
cd "$(dirname "$0")/.."
KILL_AFTER=${KILL_AFTER:-0.15}

if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

for port in 18480 18481 18482 18483 18490; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port is in use" >&2
        exit 1
    fi
done

cargo build --release --example mirror
MIRROR=target/release/examples/mirror

WORK=$(mktemp -d)
chmod 755 "$WORK"
mkdir -p "$WORK/store"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

python3 benches/replicas.py origin 18490 &
PIDS+=($!)
for i in 1 2 3; do
    RUST_LOG=warn "$MIRROR" --origin http://127.0.0.1:18490/ --store "file://$WORK/store" \
        --listen "127.0.0.1:1848$i" --drain 0 --grace 2 2>"$WORK/mirror$i.log" &
    PIDS+=($!)
    eval "REPLICA$i=$!"
done

cat >"$WORK/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/body;
    proxy_temp_path $WORK/proxy;
    include $PWD/benches/replicas/nginx.conf;
}
CONF
"$NGINX" -t -q -c "$WORK/nginx.conf" -p "$WORK"
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK" &
PIDS+=($!)

for port in 18481 18482 18483 18480; do
    for _ in $(seq 100); do
        curl -fs -o /dev/null "http://127.0.0.1:$port/_origin_pull/ready" && break
        sleep 0.1
    done
    curl -fs -o /dev/null "http://127.0.0.1:$port/_origin_pull/ready" \
        || { echo "127.0.0.1:$port not ready" >&2; exit 1; }
done

echo "round 1: 300 concurrent cold GETs over 30 keys" >&2
R1=$(python3 benches/replicas.py round http://127.0.0.1:18480 http://127.0.0.1:18490 r1 30 300)
SHARE=""
for port in 18481 18482 18483; do
    SHARE+="$(curl -fs "http://127.0.0.1:$port/_origin_pull/status" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["keys_pulled"], end="")') "
done
echo "round 2: 300 concurrent cold GETs over 30 new keys, replica 3 killed at ${KILL_AFTER}s" >&2
R2=$(python3 benches/replicas.py round http://127.0.0.1:18480 http://127.0.0.1:18490 r2 30 300 \
    "$REPLICA3" "$KILL_AFTER")
STAGING=$(find "$WORK/store" -name '*#*' | wc -l)

python3 - "$R1" "$R2" "$SHARE" "$STAGING" <<'PY'
import json, sys
r1, r2 = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"keys pulled per replica in round 1: {sys.argv[3].strip()}")
print(f"{'round':<30} {'GETs':>5} {'right':>6} {'errors':>7} {'wrong':>6} {'fetches':>8} "
      f"{'keys x2':>8} {'retried ok':>11} {'fetches+retry':>14} {'s':>6}")
for name, r in (("1: 30 cold keys", r1), ("2: 30 new keys, kill -9 r3", r2)):
    retried = f"{r['retried_right']}/{r['keys_with_errors']}"
    print(f"{name:<30} {r['gets']:>5} {r['right']:>6} {r['errors']:>7} {r['wrong']:>6} "
          f"{r['origin_fetches']:>8} {r['keys_fetched_twice_or_more']:>8} {retried:>11} "
          f"{r['origin_fetches_after_retry']:>14} {r['seconds']:>6}")
print(f"round 2 errors by kind: {r2['error_kinds']}")
print(f"staging files left in the store (r3's, swept at its next start): {sys.argv[4]}")
ok = (r1["origin_fetches"] == 30 and r1["right"] == 300 and r1["wrong"] == 0
      and r2["wrong"] == 0 and r2["retried_right"] == r2["keys_with_errors"]
      and r2["origin_fetches_after_retry"] <= 30 + r2["keys_with_errors"])
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
