#!/usr/bin/env python3
"""Helper of benches/replicas.sh: a slow counting origin, and the load with a kill.

  replicas.py origin PORT              serve /obj/<name>: 1 MiB derived from the name, sent
                                       in 16 pieces over ~200 ms; GET /_counts answers the
                                       GETs seen per path (JSON)
  replicas.py round URL ORIGIN PREFIX KEYS GETS [KILL_PID KILL_AFTER_S]
                                       GETS concurrent GETs over KEYS keys PREFIX-0..;
                                       optionally kill -9 KILL_PID KILL_AFTER_S seconds in;
                                       prints one JSON line of figures
"""
import hashlib
import http.client
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIZE = 1 << 20
PIECES = 16
PACE_S = 0.2


def body_of(name):
    """1 MiB derived from the name (so any process can check a body)."""
    seed = hashlib.sha256(name.encode()).digest()
    block = b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(2048))
    return (block * (SIZE // len(block) + 1))[:SIZE]


def origin(port):
    counts = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            path = urllib.parse.urlsplit(self.path).path
            if path == "/_counts":
                with lock:
                    out = json.dumps(counts).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
                return
            with lock:
                counts[path] = counts.get(path, 0) + 1
            if not path.startswith("/obj/"):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = body_of(path[len("/obj/"):])
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            piece = len(data) // PIECES
            try:
                for i in range(PIECES):
                    self.wfile.write(data[i * piece:(i + 1) * piece])
                    self.wfile.flush()
                    time.sleep(PACE_S / PIECES)
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.request_queue_size = 1024
    server.serve_forever()


def get(url):
    """(status, body) or ("error", why): a short body is an error (IncompleteRead)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        conn.request("GET", u.path)
        res = conn.getresponse()
        return res.status, res.read()
    except Exception as e:  # noqa: BLE001 - every failure is "an error" here
        return "error", type(e).__name__
    finally:
        conn.close()


def counts(origin_url):
    status, body = get(origin_url + "/_counts")
    assert status == 200, status
    return json.loads(body)


def round_(url, origin_url, prefix, keys, gets, kill_pid=None, kill_after=None):
    names = [f"{prefix}-{i}" for i in range(keys)]
    want = {n: hashlib.sha256(body_of(n)).hexdigest() for n in names}
    before = counts(origin_url)
    if kill_pid:
        def kill():
            time.sleep(kill_after)
            os.kill(kill_pid, signal.SIGKILL)
        threading.Thread(target=kill, daemon=True).start()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=gets) as pool:
        jobs = [pool.submit(get, f"{url}/obj/{names[n % keys]}") for n in range(gets)]
        answers = [(names[n % keys], j.result()) for n, j in enumerate(jobs)]
    took = time.monotonic() - started
    right = errors = wrong = 0
    error_kinds = {}
    failed_keys = set()
    for name, (status, body) in answers:
        if status == 200 and hashlib.sha256(body).hexdigest() == want[name]:
            right += 1
        elif status == 200:
            wrong += 1
        else:
            errors += 1
            kind = str(status) if status != "error" else body
            error_kinds[kind] = error_kinds.get(kind, 0) + 1
            failed_keys.add(name)
    after = counts(origin_url)
    fetched = {n: after.get(f"/obj/{n}", 0) - before.get(f"/obj/{n}", 0) for n in names}
    # The keys that got an error, asked again once each: right now, and pulled once more at most.
    retried_right = 0
    for name in sorted(failed_keys):
        status, body = get(f"{url}/obj/{name}")
        if status == 200 and hashlib.sha256(body).hexdigest() == want[name]:
            retried_right += 1
    final = counts(origin_url)
    print(json.dumps({
        "gets": gets, "keys": keys, "seconds": round(took, 2),
        "right": right, "errors": errors, "wrong": wrong, "error_kinds": error_kinds,
        "origin_fetches": sum(fetched.values()),
        "keys_fetched_twice_or_more": sum(1 for v in fetched.values() if v >= 2),
        "keys_with_errors": len(failed_keys), "retried_right": retried_right,
        "origin_fetches_after_retry": sum(
            final.get(f"/obj/{n}", 0) - before.get(f"/obj/{n}", 0) for n in names),
    }))


if __name__ == "__main__":
    if sys.argv[1] == "origin":
        origin(int(sys.argv[2]))
    elif sys.argv[1] == "round":
        a = sys.argv[2:]
        kill = (int(a[5]), float(a[6])) if len(a) > 5 else (None, None)
        round_(a[0], a[1], a[2], int(a[3]), int(a[4]), *kill)
    else:
        sys.exit(__doc__)
