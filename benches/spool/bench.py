#!/usr/bin/env python3
"""Helper of benches/spool.sh (M5b): a paced, counting origin that honours Range, and the
first-byte measurement of a request arriving into a fill.

  bench.py origin PORT RATE_BYTES_PER_S     serve /obj/<name>: 64 MiB derived from the name,
                                            each response paced at RATE per connection;
                                            Range → 206; GET /_stats: JSON of requests,
                                            ranged requests and body bytes sent per path
  bench.py late URL DELAY_S [MARK]          GET URL, and DELAY_S later a second GET of it;
                                            prints JSON: the second's time to first body
                                            byte, to its first MARK bytes and to its end,
                                            both bodies' sha256 right
"""
import hashlib
import http.client
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIZE = 64 << 20
PIECE = 64 << 10


def body_of(name):
    seed = hashlib.sha256(name.encode()).digest()
    block = b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(8192))
    return (block * (SIZE // len(block) + 1))[:SIZE]


_bodies = {}
_lock = threading.Lock()


def cached_body(name):
    with _lock:
        if name not in _bodies:
            _bodies[name] = body_of(name)
        return _bodies[name]


def origin(port, rate):
    stats = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            path = urllib.parse.urlsplit(self.path).path
            if path == "/_stats":
                with _lock:
                    out = json.dumps(stats).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
                return
            if not path.startswith("/obj/"):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = cached_body(path)
            first, last = 0, len(body) - 1
            rng = self.headers.get("Range")
            with _lock:
                s = stats.setdefault(path, {"requests": 0, "ranged": 0, "bytes": 0})
                s["requests"] += 1
                s["ranged"] += 1 if rng else 0
            if rng and rng.startswith("bytes="):
                a, _, b = rng[6:].split(",")[0].partition("-")
                if a:
                    first = int(a)
                    last = min(int(b), len(body) - 1) if b else len(body) - 1
                else:
                    first = max(0, len(body) - int(b))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {first}-{last}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(last - first + 1))
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Cache-Control", "public, max-age=3600")
            self.end_headers()
            start = time.monotonic()
            sent = 0
            pos = first
            try:
                while pos <= last:
                    end = min(pos + PIECE, last + 1)
                    self.wfile.write(body[pos:end])
                    with _lock:
                        stats[path]["bytes"] += end - pos
                    sent += end - pos
                    pos = end
                    ahead = sent / rate - (time.monotonic() - start)
                    if ahead > 0:
                        time.sleep(ahead)
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


def get(url, out, key, mark=0):
    u = urllib.parse.urlsplit(url)
    t0 = time.monotonic()
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    c.request("GET", u.path)
    r = c.getresponse()
    first = r.read(1)
    t1 = time.monotonic()
    h = hashlib.sha256(first)
    got = len(first)
    marked = None
    while True:
        chunk = r.read(1 << 20)
        if not chunk:
            break
        h.update(chunk)
        got += len(chunk)
        if mark and marked is None and got >= mark:
            marked = time.monotonic() - t0
    t2 = time.monotonic()
    out[key] = {
        "status": r.status,
        "first_byte_s": t1 - t0,
        "done_s": t2 - t0,
        "right": h.hexdigest() == hashlib.sha256(body_of(u.path)).hexdigest(),
        "mark_bytes": mark,
        "mark_s": marked,
    }


def late(url, delay, mark=0):
    out = {}
    a = threading.Thread(target=get, args=(url, out, "leader"))
    a.start()
    time.sleep(delay)
    b = threading.Thread(target=get, args=(url, out, "late", mark))
    b.start()
    a.join()
    b.join()
    print(json.dumps(out))


def fmt_late():
    d = json.load(sys.stdin)
    assert d["late"]["right"] and d["leader"]["right"], d
    print(f"{d['late']['first_byte_s']:.4f} {d['late']['done_s']:.2f}")


def fmt_catchup():
    d = json.load(sys.stdin)["late"]
    assert d["right"], d
    mib = d["mark_bytes"] / (1 << 20)
    print(f"catch-up run: first {mib:.0f} MiB in {d['mark_s']:.3f} s = {mib / d['mark_s']:.0f} MiB/s; "
          f"first byte {d['first_byte_s'] * 1000:.1f} ms")


if __name__ == "__main__":
    if sys.argv[1] == "fmt-late":
        fmt_late()
    elif sys.argv[1] == "fmt-catchup":
        fmt_catchup()
    elif sys.argv[1] == "origin":
        origin(int(sys.argv[2]), float(sys.argv[3]))
    elif sys.argv[1] == "late":
        late(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 0)
