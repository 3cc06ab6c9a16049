#!/usr/bin/env bash
# Side by side with nginx: installs what is missing (nginx, wrk, curl), builds the mirror
# and axum_serve_dir examples and the harness in release mode, and runs benches/side_by_side.rs.
#
#   benches/side_by_side.sh --quick          # about 2 minutes
#   benches/side_by_side.sh --full --write   # about 8 minutes; rewrites BENCHMARKS.md's tables
#
# Builds go to $CARGO_TARGET_DIR (default: target/). See benches/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v taskset >/dev/null || missing+=(util-linux)
if ((${#missing[@]})); then
    echo "installing ${missing[*]} through apt"
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    # nginx-light is Debian 12's smallest nginx; later releases only have nginx.
    $sudo apt-get install -y -qq "${missing[@]}" ||
        $sudo apt-get install -y -qq "${missing[@]/nginx-light/nginx}"
fi

cargo build --release --example mirror --example axum_serve_dir
cargo bench --bench side_by_side --no-run
exec cargo bench --bench side_by_side -- "$@"
