#!/usr/bin/env bash
# Instructions per request of the release mirror under callgrind, and where they go.
#
#   benches/profile_hits.sh hit      # 4 KiB hits through the layer
#   benches/profile_hits.sh bare     # 4 KiB hits, --no-layer (the bare ServeStore)
#   benches/profile_hits.sh async    # async-mode redirects (every request a miss)
#   N1=500 N2=2500 TOP=25 benches/profile_hits.sh hit
#
# Runs `examples/mirror` (built with `cargo build --release --example mirror` into
# $CARGO_TARGET_DIR, default target/) under `valgrind --tool=callgrind` with `--threads 1`
# twice: once answering N1 requests, once N2, all over one keep-alive connection
# (`curl -s URL URL ...`). The difference of the two runs, divided by N2 - N1, is what one
# request costs in user-space instructions, start-up and shutdown cancelled out; the same
# subtraction per function (from `callgrind_annotate`, inclusive of nothing: self cost) gives
# the top entries. For `async`, the origin is a local socket that accepts and never answers,
# so every key's one background fill stays in flight and every request is a deduplicated
# miss answered with a 302, as in row M6 of the side-by-side harness.
#
# Needs valgrind, curl and python3. Everything lives in a scratch directory, removed at the end;
# the only processes started (valgrind, the holding origin) are stopped by their own PID.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-hit}
n1=${N1:-500}
n2=${N2:-2500}
top=${TOP:-20}
bin=${CARGO_TARGET_DIR:-target}/release/examples/mirror
case $mode in hit | bare | async) ;; *)
    echo "usage: $0 hit|bare|async" >&2
    exit 2
    ;;
esac
[[ -x $bin ]] || {
    echo "$bin is missing: cargo build --release --example mirror" >&2
    exit 1
}
for tool in valgrind callgrind_annotate curl python3; do
    command -v $tool >/dev/null || {
        echo "$tool is missing" >&2
        exit 1
    }
done

scratch=$(mktemp -d /tmp/profile-hits.XXXXXX)
hold_pid=""
cleanup() {
    [[ -n $hold_pid ]] && kill "$hold_pid" 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$scratch/store"
head -c 4096 /dev/urandom >"$scratch/store/4k.bin"

extra=()
origin_port=9 # nothing listens there; hits never ask the origin
if [[ $mode == bare ]]; then
    extra+=(--no-layer)
elif [[ $mode == async ]]; then
    origin_port=$(free_port)
    # An origin that accepts and never answers: fills stay in flight.
    python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(100); held = []
while True: held.append(s.accept()[0])' "$origin_port" &
    hold_pid=$!
    extra+=(--mode async)
fi

# run N: the mirror under callgrind answering N requests (plus one readiness probe).
run() {
    local n=$1 port out
    port=$(free_port)
    out=$scratch/cg.$n.out
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" \
        --store "file://$scratch/store" --origin "http://127.0.0.1:$origin_port/" \
        --listen "127.0.0.1:$port" --threads 1 --grace 0 "${extra[@]}" \
        >"$scratch/log.$n" 2>&1 &
    local pid=$!
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/4k.bin" && break
        sleep 0.3
    done
    local urls=()
    for i in $(seq 1 "$n"); do
        if [[ $mode == async ]]; then
            urls+=("http://127.0.0.1:$port/missing/k$((i % 4)).bin")
        else
            urls+=("http://127.0.0.1:$port/4k.bin")
        fi
    done
    curl -s "${urls[@]}" >/dev/null
    kill -INT "$pid"
    wait "$pid" || true
    # --auto=no: the source annotation's call lines ("=> file:function") are inclusive and
    # would be summed with the self costs.
    callgrind_annotate --auto=no --threshold=100 "$out" >"$scratch/top.$n" 2>/dev/null
}

run "$n1"
run "$n2"

python3 - "$scratch/top.$n1" "$scratch/top.$n2" "$n1" "$n2" "$top" "$mode" <<'EOF'
import re, sys
a, b, n1, n2, top, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
line = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.*)$")
def parse(path):
    total, fns = None, {}
    for l in open(path, errors="replace"):
        m = line.match(l)
        if not m:
            continue
        n, rest = int(m.group(1).replace(",", "")), m.group(2).strip()
        if rest.startswith("PROGRAM TOTALS"):
            total = n
        elif ":" in rest and total is not None:
            # "file:function [object]": keep the function and its object
            fn = rest.split(":", 1)[1]
            fns[fn] = fns.get(fn, 0) + n
    return total, fns
ta, fa = parse(a)
tb, fb = parse(b)
per = (tb - ta) / (n2 - n1)
print(f"{mode}: {ta:,} instructions for {n1} requests, {tb:,} for {n2}: {per:,.0f} per request")
rows = sorted(((fb.get(k, 0) - fa.get(k, 0)) / (n2 - n1), k) for k in set(fa) | set(fb))
rows.reverse()
print(f"\ntop {top} functions by self instructions per request (share of {per:,.0f}):")
for d, k in rows[:top]:
    print(f"{d:9,.0f}  {100 * d / per:5.1f} %  {k[:150]}")

# The same, summed by where the function comes from: the first crate named in its path
# (`<hyper::proto::... as ...>` is hyper's), libc's allocator and mem* by name.
groups = {
    "malloc": "malloc/free (libc's, or mimalloc's `mi_*` in the examples)",
    "mem": "libc memcpy/memmove/memset",
    "libc": "libc, other (syscall wrappers)",
    "hyper": "hyper + httparse + http + httpdate (HTTP/1, header maps)",
    "httparse": None, "http": None, "httpdate": None,
    "tokio": "tokio + mio (runtime, I/O driver)", "mio": None,
    "axum": "axum + tower + tower_http", "tower": None, "tower_http": None,
    "tower_layer": None, "tower_service": None,
    "tower_origin_pull": "tower_origin_pull (this crate)",
    "object_store": "object_store + url (paths)", "url": None,
    "core": "Rust core/alloc/std (str search, fmt, UTF-8, binary search)",
    "alloc": None, "std": None, "__rustc": None,
}
alias = {"httparse": "hyper", "http": "hyper", "httpdate": "hyper", "mio": "tokio",
         "tower": "axum", "tower_http": "axum", "tower_layer": "axum", "tower_service": "axum",
         "url": "object_store", "alloc": "core", "std": "core", "__rustc": "core"}
crate = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)::")
sums = {}
for k in set(fa) | set(fb):
    d = (fb.get(k, 0) - fa.get(k, 0)) / (n2 - n1)
    name, obj = k.rsplit(" [", 1) if " [" in k else (k, "")
    if re.match(r"_?mi_|mi_", name.split(":")[-1].strip()) or "mimalloc" in name:
        g = "malloc"
    elif "libc.so" in obj:
        g = "malloc" if re.search(r"malloc|free|realloc|calloc|tcache", name) else \
            "mem" if re.match(r"_*(mem|wmem)", name) else "libc"
    else:
        m = crate.search(name.lstrip("<"))
        g = m.group(1) if m else "other"
        g = alias.get(g, g)
        if g not in groups:
            g = "other"
    sums[g] = sums.get(g, 0) + d
print(f"\nby origin (self instructions per request):")
for g, d in sorted(sums.items(), key=lambda x: -x[1]):
    print(f"{d:9,.0f}  {100 * d / per:5.1f} %  {groups.get(g) or g}")
EOF
