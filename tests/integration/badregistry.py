#!/usr/bin/python3
"""A misbehaving registry for integration tests: a reverse proxy in front of a real registry
that passes every request through, except blob GETs, which it spoils according to --mode.

    badregistry.py --port P --mode MODE --upstream http://127.0.0.1:REALPORT
                   [--redirect-port P2] [--scope blobs|all] [--reject-auth]
                   [--only DIGEST]... [--rate BYTES_PER_SEC]

MODE (applies to GET /v2/NAME/blobs/DIGEST; with --scope all, to manifest GETs as well):
  pass         nothing spoiled
  drop-once    the first GET of each blob gets the status line, headers (with the full
               Content-Length) and the first half of the body, then the connection is closed;
               later GETs of it pass through, Range header included
  wrong-bytes  one byte in the middle of the body is flipped, every time
  truncate     like drop-once, but every time
  slow-429     the first request for each path answers 429 Too Many Requests, Retry-After: 1
  redirect     307 to a second listener on --redirect-port (another host:port) that serves the
               blob, fetched from upstream with the Authorization the proxy saw (as a storage
               backend with a signed URL would), and records whether the client sent an
               Authorization header to it; with --reject-auth a request that carries one is
               answered 400, as S3 does for a presigned URL

--only DIGEST (repeatable): spoil only these blobs (say, a layer but not the image config,
which is a blob too); other blobs pass through. --rate N: send blob GET bodies (any mode, also
pass) at about N bytes/s, in small writes, so that a client's pull takes a while.

Stub endpoints on the main port:
  GET /_stub/log        JSON list of the spoilable requests seen: method, path, range,
                        authorization (true/false), action (pass, dropped, flipped, 429,
                        redirected), status, bytes sent, t (time.time() when answered)
  GET /_stub/auth-seen  JSON {"requests": N, "with_auth": N, "auth_seen": bool, "entries": [...]}
                        about the requests that reached the redirect listener
  POST /_stub/reset     forget the log and the once-per-blob state
Everything is HTTP/1.1 keep-alive with Content-Length on every response (upstream bodies are
buffered), so a client's connection reuse works as against a real registry.
"""
import argparse
import http.client
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BLOB_RE = re.compile(r"^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$")
MANIFEST_RE = re.compile(r"^/v2/(.+)/manifests/([^/]+)$")
HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
       "trailer", "trailers", "transfer-encoding", "upgrade", "content-length"}
RELAY_SKIP = HOP | {"date", "server"}  # send_response() adds its own


class State:
    def __init__(self, args):
        self.mode = args.mode
        self.scope = args.scope
        up = urllib.parse.urlsplit(args.upstream)
        self.up_host, self.up_port = up.hostname, up.port or 80
        self.redirect_port = args.redirect_port
        self.reject_auth = args.reject_auth
        self.only = set(args.only or ())
        self.rate = args.rate
        self.lock = threading.Lock()
        self.seen_once = set()
        self.log = []
        self.redirects = {}  # id -> (path, authorization or None)
        self.auth_entries = []

    def first_time(self, key):
        with self.lock:
            if key in self.seen_once:
                return False
            self.seen_once.add(key)
            return True

    def record(self, entry):
        with self.lock:
            self.log.append(entry)


def read_request_body(h):
    """Body of the incoming request, de-chunked."""
    if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
        out = bytearray()
        while True:
            line = h.rfile.readline()
            n = int(line.split(b";")[0].strip() or b"0", 16)
            if n == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += h.rfile.read(n)
            h.rfile.readline()
    n = int(h.headers.get("Content-Length") or 0)
    return h.rfile.read(n) if n else b""


def upstream(state, method, path, headers, body):
    """One request to the real registry; returns (status, reason, [(k, v)], body)."""
    c = http.client.HTTPConnection(state.up_host, state.up_port, timeout=60)
    try:
        c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if not any(k.lower() == "host" for k, _ in headers):
            c.putheader("Host", "%s:%d" % (state.up_host, state.up_port))
        for k, v in headers:
            if k.lower() not in HOP:
                c.putheader(k, v)
        if body or method in ("POST", "PUT", "PATCH"):
            c.putheader("Content-Length", str(len(body)))
        c.endheaders(body if body else None)
        r = c.getresponse()
        data = r.read()
        return r.status, r.reason, r.getheaders(), data
    finally:
        c.close()


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "afsp-test-badregistry/1"

    def log_message(self, fmt, *args):
        sys.stderr.write("badregistry: %s\n" % (fmt % args))

    def send_simple(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, obj):
        self.send_simple(200, json.dumps(obj, indent=1).encode(),
                         [("Content-Type", "application/json")])

    def write_body(self, data, paced):
        """Writes data, at about state.rate bytes/s when paced."""
        rate = self.server.state.rate if paced else 0
        if not rate:
            self.wfile.write(data)
            return
        step = max(1, min(64 << 10, rate // 50))
        start = time.monotonic()
        for off in range(0, len(data), step):
            self.wfile.write(data[off:off + step])
            self.wfile.flush()
            ahead = start + (off + step) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

    def relay(self, status, reason, headers, data, spoil=None, paced=False):
        """Send an upstream response; spoil in (None, 'half', 'flip')."""
        self.send_response(status, reason)
        length = None
        for k, v in headers:
            if k.lower() == "content-length":
                length = v
            if k.lower() not in RELAY_SKIP:
                self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", length if length is not None else "0")
            self.end_headers()
            return 0
        if spoil == "flip" and data:
            i = len(data) // 2
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if spoil == "half":
            part = data[:len(data) // 2]
            self.write_body(part, paced)
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return len(part)
        self.write_body(data, paced)
        return len(data)

    def handle_any(self):
        st = self.server.state
        path = urllib.parse.urlsplit(self.path).path
        if path.startswith("/_stub/"):
            return self.stub(path)
        body = read_request_body(self)
        blob = BLOB_RE.match(path)
        spoilable = self.command in ("GET", "HEAD") and (
            blob or (st.scope == "all" and MANIFEST_RE.match(path)))
        exempt = bool(st.only) and blob is not None and blob.group(2) not in st.only
        if not spoilable or self.command == "HEAD" or st.mode == "pass" or exempt:
            s, r, h, d = upstream(st, self.command, self.path, self.headers.items(), body)
            n = self.relay(s, r, h, d, paced=bool(blob) and self.command == "GET")
            if spoilable:
                self.note(path, "pass", n, s)
            return
        mode = st.mode
        if mode == "slow-429" and st.first_time(path):
            self.note(path, "429", 0, 429)
            return self.send_simple(429, b'{"errors":[{"code":"TOOMANYREQUESTS",'
                                         b'"message":"slow down"}]}\n',
                                    [("Retry-After", "1"), ("Content-Type", "application/json")])
        if mode == "redirect" and BLOB_RE.match(path):
            rid = os.urandom(8).hex()
            with st.lock:
                st.redirects[rid] = (self.path, self.headers.get("Authorization"))
            loc = "http://127.0.0.1:%d/blob/%s?sig=%s" % (st.redirect_port, rid, rid[::-1])
            self.note(path, "redirected", 0, 307)
            return self.send_simple(307, b"", [("Location", loc)])
        s, r, h, d = upstream(st, self.command, self.path, self.headers.items(), body)
        spoil = None
        if 200 <= s < 300:
            if mode == "drop-once" and st.first_time(path.rsplit("/", 1)[1]):
                spoil = "half"
            elif mode == "truncate":
                spoil = "half"
            elif mode == "wrong-bytes":
                spoil = "flip"
        n = self.relay(s, r, h, d, spoil, paced=bool(blob))
        self.note(path, {"half": "dropped", "flip": "flipped", None: "pass"}[spoil], n, s)

    def note(self, path, action, sent, status):
        self.server.state.record({
            "method": self.command, "path": path, "range": self.headers.get("Range"),
            "authorization": self.headers.get("Authorization") is not None,
            "action": action, "status": status, "bytes": sent, "t": time.time()})

    def stub(self, path):
        st = self.server.state
        if path == "/_stub/log":
            with st.lock:
                return self.send_json(list(st.log))
        if path == "/_stub/auth-seen":
            with st.lock:
                e = list(st.auth_entries)
            return self.send_json({"requests": len(e),
                                   "with_auth": sum(1 for x in e if x["authorization"]),
                                   "auth_seen": any(x["authorization"] for x in e),
                                   "entries": e})
        if path == "/_stub/reset":
            read_request_body(self)
            with st.lock:
                st.log.clear()
                st.seen_once.clear()
                st.auth_entries.clear()
            return self.send_json({"ok": True})
        self.send_simple(404, b"no such stub endpoint\n")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


class Redirected(BaseHTTPRequestHandler):
    """The other host:port blobs are redirected to."""
    protocol_version = "HTTP/1.1"
    server_version = "afsp-test-blobstore/1"

    def log_message(self, fmt, *args):
        sys.stderr.write("badregistry(redirect): %s\n" % (fmt % args))

    def do_GET(self):
        st = self.server.state
        m = re.match(r"^/blob/([0-9a-f]+)$", urllib.parse.urlsplit(self.path).path)
        auth = self.headers.get("Authorization")
        with st.lock:
            target = st.redirects.get(m.group(1)) if m else None
            st.auth_entries.append({"path": self.path, "method": self.command,
                                    "authorization": auth is not None,
                                    "authorization_value": auth,
                                    "range": self.headers.get("Range")})
        if not target or (auth is not None and st.reject_auth):
            code, body = (404, b"unknown blob link\n") if not target else \
                (400, b"InvalidArgument: only one auth mechanism allowed\n")
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        path, orig_auth = target
        hdrs = [("Host", "%s:%d" % (st.up_host, st.up_port))]
        if orig_auth:
            hdrs.append(("Authorization", orig_auth))
        if self.headers.get("Range"):
            hdrs.append(("Range", self.headers.get("Range")))
        s, r, h, d = upstream(st, self.command, path, hdrs, b"")
        self.send_response(s, r)
        for k, v in h:
            if k.lower() not in RELAY_SKIP and k.lower() not in ("www-authenticate",
                                                          "docker-distribution-api-version"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(d)) if self.command != "HEAD" else
                         dict((k.lower(), v) for k, v in h).get("content-length", "0"))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(d)

    do_HEAD = do_GET


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", required=True,
                    choices=["pass", "drop-once", "wrong-bytes", "truncate", "slow-429",
                             "redirect"])
    ap.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT")
    ap.add_argument("--redirect-port", type=int, default=0)
    ap.add_argument("--scope", choices=["blobs", "all"], default="blobs")
    ap.add_argument("--reject-auth", action="store_true")
    ap.add_argument("--only", action="append", metavar="DIGEST",
                    help="spoil only this blob (repeatable)")
    ap.add_argument("--rate", type=int, default=0, metavar="BYTES_PER_SEC",
                    help="pace blob GET bodies")
    args = ap.parse_args()
    if args.mode == "redirect" and not args.redirect_port:
        ap.error("--mode redirect needs --redirect-port")
    state = State(args)
    servers = []
    main_srv = ThreadingHTTPServer(("127.0.0.1", args.port), Proxy)
    servers.append(main_srv)
    if args.redirect_port:
        servers.append(ThreadingHTTPServer(("127.0.0.1", args.redirect_port), Redirected))
    for s in servers:
        s.daemon_threads = True
        s.state = state
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    sys.stderr.write("badregistry: mode %s on 127.0.0.1:%d -> %s%s\n" %
                     (args.mode, args.port, args.upstream,
                      " (redirects to 127.0.0.1:%d)" % args.redirect_port
                      if args.redirect_port else ""))
    sys.stderr.flush()
    try:
        main_srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
