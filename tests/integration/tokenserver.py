#!/usr/bin/python3
"""A small Docker registry token server (the "token" auth of the CNCF distribution registry),
for integration tests only. Standard library only; signs with the openssl CLI.

    tokenserver.py --port P --key KEY.pem --cert CERT.pem --issuer ISS --service SVC \
                   --user USER:PASS [--user ...] [--alg RS256|ES256] [--header x5c|kid|both]
                   [--anonymous empty|deny|pull] [--expires SECS]

GET /token?service=SVC&scope=repository:NAME:pull,push (Basic credentials) answers
{"token", "access_token", "expires_in", "issued_at"}. POST /token (OAuth2 password grant, form
encoded: grant_type=password, username, password, service, scope) answers the same.
  - good credentials: every requested repository action out of pull, push, delete, * is granted
  - wrong credentials: 401
  - no credentials: --anonymous empty (default) issues a token granting nothing, as public
    registries do, so the registry itself refuses; deny answers 401; pull grants pull only.
GET /_stub/requests answers a JSON list of the token requests seen (user, scopes, result), so a
test can check how often a client asked for a token. The JWT is signed with KEY; CERT is the
self-signed certificate the registry has as its rootcertbundle.
"""
import argparse
import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def pem_body(pem, label):
    lines = pem.strip().splitlines()
    begin = "-----BEGIN %s-----" % label
    end = "-----END %s-----" % label
    i = lines.index(begin)
    j = lines.index(end)
    return base64.b64decode("".join(lines[i + 1:j]))


def libtrust_kid(spki_der):
    """The key id distribution 2.8 computes for a trusted key (docker/libtrust keyIDEncode)."""
    s = base64.b32encode(hashlib.sha256(spki_der).digest()[:30]).decode().rstrip("=")
    return ":".join(s[i:i + 4] for i in range(0, len(s), 4))


def der_ecdsa_to_raw(der, size=32):
    """ASN.1 SEQUENCE { INTEGER r, INTEGER s } -> r || s, each size bytes (JWS ES256)."""
    def read_len(b, i):
        n = b[i]
        i += 1
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(b[i:i + k], "big")
            i += k
        return n, i

    assert der[0] == 0x30
    _, i = read_len(der, 1)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n, i = read_len(der, i + 1)
        v = int.from_bytes(der[i:i + n], "big")
        i += n
        out += v.to_bytes(size, "big")
    return out


class Signer:
    def __init__(self, key, cert, alg, header_mode):
        self.key = key
        self.alg = alg
        cert_pem = open(cert).read()
        self.cert_der = pem_body(cert_pem, "CERTIFICATE")
        pub_pem = subprocess.run(["openssl", "x509", "-in", cert, "-pubkey", "-noout"],
                                 check=True, capture_output=True, text=True).stdout
        self.kid = libtrust_kid(pem_body(pub_pem, "PUBLIC KEY"))
        self.header = {"typ": "JWT", "alg": alg}
        if header_mode in ("kid", "both"):
            self.header["kid"] = self.kid
        if header_mode in ("x5c", "both"):
            self.header["x5c"] = [base64.b64encode(self.cert_der).decode()]

    def sign(self, claims):
        signing_input = (b64url(json.dumps(self.header, separators=(",", ":")).encode()) + "." +
                         b64url(json.dumps(claims, separators=(",", ":")).encode()))
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key],
                             input=signing_input.encode(), check=True,
                             capture_output=True).stdout
        if self.alg == "ES256":
            sig = der_ecdsa_to_raw(sig)
        return signing_input + "." + b64url(sig)


def parse_scopes(values):
    out = []
    for v in values:
        for s in v.split():
            if s.count(":") < 2:
                continue
            typ, rest = s.split(":", 1)
            name, actions = rest.rsplit(":", 1)
            out.append((typ, name, [a for a in actions.split(",") if a]))
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "afsp-test-tokenserver/1"

    def log_message(self, fmt, *args):
        sys.stderr.write("tokenserver: %s %s\n" % (self.address_string(), fmt % args))

    def reply(self, code, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        if u.path == "/_stub/requests":
            with self.server.lock:
                return self.reply(200, list(self.server.seen))
        if u.path != "/token":
            return self.reply(404, {"error": "not found"})
        user = password = None
        auth = self.headers.get("Authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except Exception:
                return self.reply(400, {"error": "bad authorization header"})
        self.issue(user, password, q.get("service", [""])[0], q.get("scope", []),
                   q.get("account", [None])[0])

    def do_POST(self):
        u = urllib.parse.urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(n).decode())
        if u.path != "/token":
            return self.reply(404, {"error": "not found"})
        if form.get("grant_type", [""])[0] != "password":
            return self.reply(400, {"error": "unsupported_grant_type"})
        self.issue(form.get("username", [None])[0], form.get("password", [None])[0],
                   form.get("service", [""])[0], form.get("scope", []), None)

    def issue(self, user, password, service, scope_values, account):
        srv = self.server
        scopes = parse_scopes(scope_values)
        record = {"user": user, "scopes": scope_values, "service": service}
        if user is None:
            if srv.anonymous == "deny":
                record["result"] = 401
                self.remember(record)
                return self.reply(401, {"errors": [{"code": "UNAUTHORIZED",
                                                    "message": "credentials required"}]},
                                  {"WWW-Authenticate": 'Basic realm="afsp-test-token"'})
            allowed = {"pull"} if srv.anonymous == "pull" else set()
            subject = ""
        elif srv.users.get(user) != password:
            record["result"] = 401
            self.remember(record)
            return self.reply(401, {"errors": [{"code": "UNAUTHORIZED",
                                                "message": "invalid credentials"}]},
                              {"WWW-Authenticate": 'Basic realm="afsp-test-token"'})
        else:
            allowed = {"pull", "push", "delete", "*"}
            subject = user
        if service and service != srv.service:
            record["result"] = 400
            self.remember(record)
            return self.reply(400, {"errors": [{"code": "DENIED", "message": "unknown service"}]})
        access = []
        for typ, name, actions in scopes:
            if typ == "registry" and subject:
                granted = actions
            elif typ == "repository":
                granted = [a for a in actions if a in allowed]
            else:
                granted = []
            access.append({"type": typ, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": srv.issuer,
            "sub": subject,
            "aud": srv.service,
            "exp": now + srv.expires,
            "nbf": now - 10,
            "iat": now,
            "jti": b64url(os.urandom(12)),
            "access": access,
        }
        token = srv.signer.sign(claims)
        record["result"] = 200
        record["access"] = access
        self.remember(record)
        self.reply(200, {"token": token, "access_token": token, "expires_in": srv.expires,
                         "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})

    def remember(self, record):
        with self.server.lock:
            self.server.seen.append(record)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--key", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--issuer", default="afsp-test-issuer")
    ap.add_argument("--service", default="afsp-test-registry")
    ap.add_argument("--user", action="append", default=[], help="USER:PASS, repeatable")
    ap.add_argument("--alg", choices=["RS256", "ES256"], default="RS256")
    ap.add_argument("--header", dest="header_mode", choices=["x5c", "kid", "both"],
                    default="x5c")
    ap.add_argument("--anonymous", choices=["empty", "deny", "pull"], default="empty")
    ap.add_argument("--expires", type=int, default=300)
    a = ap.parse_args()

    srv = ThreadingHTTPServer((a.host, a.port), Handler)
    srv.daemon_threads = True
    srv.signer = Signer(a.key, a.cert, a.alg, a.header_mode)
    srv.users = dict(u.split(":", 1) for u in a.user)
    srv.issuer, srv.service, srv.expires, srv.anonymous = a.issuer, a.service, a.expires, a.anonymous
    srv.lock = threading.Lock()
    srv.seen = []
    sys.stderr.write("tokenserver: listening on %s:%d kid=%s\n" % (a.host, a.port, srv.signer.kid))
    sys.stderr.flush()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
