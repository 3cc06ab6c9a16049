#!/usr/bin/env python3
"""Peak memory of examples/mirror under floods of clients that never read.

Usage: benches/flood_memory.py MIRROR_BINARY [--clients 100] [--rounds 3]

For each flood (proxy mode; a cold `Range` in sync mode, which proxies the range and queues
the full fill in the background), it starts a local origin (64 MiB objects, single ranges),
the mirror with `max_fills = 8`, then opens CLIENTS connections at once, each asking for a
different cold key and never reading a byte. It samples the mirror's RSS every 20 ms for
12 s and prints the peak above the idle baseline, the most fills the mirror had in flight
(its status endpoint), the most requests the origin had open (the origin notices a request
the mirror dropped only at its next write, so this can lag by one), and the bound
RELIABILITY.md states:

    max_fills × (coalesce_window + one chunk + the store's write buffer)
      + connections × per-connection buffers

with one chunk ≤ 1 MiB, the store's buffer (BucketStore defaults: 8 MiB parts, 2 in flight)
= 24 MiB for fills that store, and 512 KiB per connection (hyper's write buffer and what it
holds of a frame). Nothing here is timed: only memory and concurrency are judged.
"""

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MIB = 1024 * 1024
OBJECT = 64 * MIB
BLOCK = bytes(range(256)) * 4096  # 1 MiB

in_flight = 0
max_in_flight = 0
lock = threading.Lock()


class Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        global in_flight, max_in_flight
        with lock:
            in_flight += 1
            max_in_flight = max(max_in_flight, in_flight)
        try:
            start, end = 0, OBJECT - 1
            status = 200
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if m:
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else OBJECT - 1
                status = 206
            self.send_response(status)
            self.send_header("Content-Length", str(end - start + 1))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{OBJECT}")
            self.end_headers()
            left = end - start + 1
            while left > 0:
                n = min(left, len(BLOCK))
                self.wfile.write(BLOCK[:n])
                left -= n
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with lock:
                in_flight -= 1


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fills_in_flight(port):
    """The mirror's own count of fills in flight, from its status endpoint."""
    import json
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1)
        s.sendall(b"GET /_origin_pull/status HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        return json.loads(data.split(b"\r\n\r\n", 1)[1])["fills_in_flight"]
    except (OSError, ValueError, KeyError, IndexError):
        return 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_listening(port, limit=30):
    until = time.time() + limit
    while time.time() < until:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def one_flood(binary, origin_port, kind, clients, scratch):
    global max_in_flight
    port = free_port()
    store = os.path.join(scratch, f"store-{kind}-{port}")
    os.makedirs(store)
    mode = "proxy" if kind == "proxy" else "sync"
    config = os.path.join(scratch, f"{kind}-{port}.toml")
    with open(config, "w") as f:
        f.write(
            f"""max_fills = 8
coalesce_window = "4MiB"

[store]
url = "file://{store}"

[[rules]]
mode = "{mode}"
origin = {{ hosts = ["http://127.0.0.1:{origin_port}/"] }}
"""
        )
    mirror = subprocess.Popen(
        [binary, "--config", config, "--listen", f"127.0.0.1:{port}"],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port)
        # One small pull first, so the baseline includes a warmed-up runtime and pool.
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /_origin_pull/status HTTP/1.1\r\nHost: m\r\n\r\n")
        s.recv(65536)
        s.close()
        time.sleep(0.3)
        baseline = rss_kib(mirror.pid)
        with lock:
            max_in_flight = 0
        socks = []
        for i in range(clients):
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            rng = b"Range: bytes=0-\r\n" if kind == "range" else b""
            s.sendall(
                f"GET /{kind}/{port}/{i}.bin HTTP/1.1\r\nHost: m\r\n".encode() + rng + b"\r\n"
            )
            socks.append(s)
        peak, fills = baseline, 0
        until = time.time() + 12
        while time.time() < until:
            peak = max(peak, rss_kib(mirror.pid))
            fills = max(fills, fills_in_flight(port))
            time.sleep(0.02)
        for s in socks:
            s.close()
        return baseline, peak, max_in_flight, fills
    finally:
        mirror.terminate()
        mirror.wait()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("binary")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()

    origin = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    origin.daemon_threads = True
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    origin_port = origin.server_address[1]

    n, window, chunk, store_buf, per_conn = 8, 4 * MIB, 1 * MIB, 24 * MIB, 512 * 1024
    bounds = {
        # Proxied fills store nothing.
        "proxy": n * (window + chunk) + args.clients * per_conn,
        # The range proxies store nothing; the background fills (at most 4 of the 8) do.
        "range": n * (window + chunk) + 4 * store_buf + args.clients * per_conn,
    }
    print(
        f"| flood | clients | peak RSS over idle (median of {args.rounds}) | runs "
        "| fills in flight (max, the mirror's count) | origin requests open (max, as the origin saw them) "
        "| stated bound |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for kind in ["proxy", "range"]:
            growths, flights, fills = [], [], []
            for _ in range(args.rounds):
                baseline, peak, flight, fill = one_flood(
                    args.binary, origin_port, kind, args.clients, scratch
                )
                growths.append((peak - baseline) / 1024)
                flights.append(flight)
                fills.append(fill)
            med = statistics.median(growths)
            runs = ", ".join(f"{g:.0f}" for g in growths)
            bound = bounds[kind] / MIB
            verdict = "within" if max(growths) <= bound else "OVER"
            print(
                f"| {kind} | {args.clients} | {med:.0f} MiB | {runs} MiB | {max(fills)} "
                f"| {max(flights)} | {bound:.0f} MiB ({verdict}) |"
            )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
