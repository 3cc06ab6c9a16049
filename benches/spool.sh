#!/usr/bin/env bash
# M5b (issue 16): a request arriving 1 s into a 5 s fill, and aria2c -x8 on a cold 64 MiB
# object, against the mirror example (with and without its spool, each RangeMiss), nginx
# proxy_cache_lock and Varnish, on the same paced origin (benches/spool/bench.py).
#
#   benches/spool.sh            # about 3 minutes; prints the medians of 3 runs
#
# Needs: cargo, python3, curl, nginx, varnishd, aria2c (apt-get install nginx varnish aria2).
# Ports: 18590-18591 (origins), 18592 (nginx), 18593 (Varnish), 18594 (mirror).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SLOW_RATE=13421773   # 64 MiB in 5 s, per connection
FAST_RATE=52428800   # 50 MiB/s per connection, for aria2c

cargo build --release --example mirror
MIRROR=${CARGO_TARGET_DIR:-target}/release/examples/mirror
WORK=$(mktemp -d)
chmod 755 "$WORK"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

python3 benches/spool/bench.py origin 18590 $SLOW_RATE & PIDS+=($!)
python3 benches/spool/bench.py origin 18591 $FAST_RATE & PIDS+=($!)

ready() { for _ in $(seq 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; return 1; }

mirror() { # $1 origin port, $2 name, $3 extra top-level lines, $4 extra rule lines
    mkdir -p "$WORK/$2/store" "$WORK/$2/spool"
    printf '%b\n' "$3" "spool_dir = \"$WORK/$2/spool\"" "[store]" "url = \"file://$WORK/$2/store\"" \
        "[[rules]]" "$4" "origin = { hosts = [\"http://127.0.0.1:$1/\"] }" >"$WORK/$2/mirror.toml"
    RUST_LOG=warn "$MIRROR" --config "$WORK/$2/mirror.toml" --listen 127.0.0.1:18594 \
        2>"$WORK/$2/mirror.log" &
    MIRROR_PID=$!
    ready http://127.0.0.1:18594/_origin_pull/ready || { cat "$WORK/$2/mirror.log"; exit 1; }
}
stop_mirror() { kill "$MIRROR_PID"; wait "$MIRROR_PID" 2>/dev/null || true; }

cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/body;
    proxy_temp_path $WORK/proxy;
    proxy_cache_path $WORK/cache keys_zone=c:10m max_size=4g inactive=1h use_temp_path=off;
    server {
        listen 127.0.0.1:18592;
        location / {
            proxy_pass http://127.0.0.1:18590;
            proxy_http_version 1.1;
            proxy_cache c;
            proxy_cache_valid 200 1h;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 30s;
            proxy_cache_lock_age 30s;
        }
    }
}
CONF
nginx -c "$WORK/nginx.conf" -p "$WORK" & PIDS+=($!)
mkdir -p "$WORK/varnish"
varnishd -F -a 127.0.0.1:18593 -b 127.0.0.1:18590 -s malloc,1g -n "$WORK/varnish" \
    -p default_ttl=3600 >"$WORK/varnish.log" 2>&1 & PIDS+=($!)
sleep 1

late() { # $1 base URL, $2 key → first-byte seconds of the late request
    python3 benches/spool/bench.py late "$1/obj/$2" 1.0 | tee -a "$WORK/late.jsonl" \
        | python3 benches/spool/bench.py fmt-late
}

median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.4f}")' "$@"; }

echo "== first byte of a request 1 s into a 5 s fill (64 MiB at 13.4 MB/s) =="
for sys in nginx varnish mirror mirror-nospool; do
    firsts=(); dones=()
    case $sys in
        mirror) mirror 18590 m-late "" "" ;;
        mirror-nospool) mirror 18590 m-nospool "spool_max_bytes = \"0\"" "" ;;
    esac
    for run in $(seq "$RUNS"); do
        case $sys in
            nginx) base=http://127.0.0.1:18592 ;;
            varnish) base=http://127.0.0.1:18593 ;;
            *) base=http://127.0.0.1:18594 ;;
        esac
        read -r first done < <(late "$base" "late-$sys-$run")
        firsts+=("$first"); dones+=("$done")
    done
    [[ $sys == mirror* ]] && stop_mirror
    echo "$sys: first byte (s) runs ${firsts[*]} median $(median "${firsts[@]}"); done (s) runs ${dones[*]}"
done

origin_bytes() { # $1 origin port, $2 path → bytes sent for it
    curl -fs "http://127.0.0.1:$1/_stats" | python3 -c "import json,sys; print(json.load(sys.stdin).get('$2',{}).get('bytes',0))"
}

aria() { # $1 URL, $2 out name → seconds
    local t0 t1
    t0=$(date +%s.%N)
    aria2c -q -x8 -s8 -k1M --file-allocation=none --allow-overwrite=true -d "$WORK/dl" -o "$2" "$1"
    t1=$(date +%s.%N)
    python3 -c "print(f'{$t1-$t0:.2f}')"
}

echo "== catch-up: a request 4 s into the 5 s fill reads the 48 MiB already spooled =="
mirror 18590 m-catchup "" ""
for run in $(seq "$RUNS"); do
    python3 benches/spool/bench.py late "http://127.0.0.1:18594/obj/catchup-$run" 4.0 $((48 << 20)) \
        | python3 benches/spool/bench.py fmt-catchup
done
stop_mirror

echo "== aria2c -x8 -s8 -k1M, cold 64 MiB, origin 50 MiB/s per connection =="
for variant in direct serve_range_and_fill join_fill_2s join_fill_1s join_fill_long; do
    ratios=(); times=()
    case $variant in
        serve_range_and_fill) mirror 18591 m-a1 "" "on_range = \"serve_range_and_fill\"" ;;
        join_fill_long) mirror 18591 m-a2 "" "on_range = \"join_fill\"\non_range_max_wait = \"100y\"" ;;
        join_fill_1s) mirror 18591 m-a3 "" "on_range = \"join_fill\"\non_range_max_wait = \"1s\"" ;;
        join_fill_2s) mirror 18591 m-a4 "" "on_range = \"join_fill\"\non_range_max_wait = \"2s\"" ;;
    esac
    for run in $(seq "$RUNS"); do
        key="aria-$variant-$run"
        if [[ $variant == direct ]]; then url=http://127.0.0.1:18591/obj/$key; else url=http://127.0.0.1:18594/obj/$key; fi
        t=$(aria "$url" "$key")
        sum=$(sha256sum "$WORK/dl/$key" | cut -d' ' -f1)
        want=$(python3 -c "import hashlib,sys; sys.path.insert(0,'benches/spool'); import bench; print(hashlib.sha256(bench.body_of('/obj/$key')).hexdigest())")
        [[ $sum == "$want" ]] || { echo "$variant run $run: wrong bytes" >&2; exit 1; }
        if [[ $variant != direct ]]; then
            # The background or pinned fill may still be finishing: let it end.
            sleep 2
        fi
        bytes=$(origin_bytes 18591 "/obj/$key")
        ratios+=("$(python3 -c "print(f'{$bytes/(64<<20):.2f}')")"); times+=("$t")
    done
    [[ $variant != direct ]] && stop_mirror
    echo "$variant: origin bytes / size runs ${ratios[*]} median $(median "${ratios[@]}"); time (s) runs ${times[*]} median $(median "${times[@]}")"
done
