#!/usr/bin/python3
"""Small OCI layout / registry helpers for the integration fixtures (standard library only).

    ocitool.py recompress LAYOUT TAG NEWTAG gzip|zstd|none
        Writes a copy of image TAG whose layers are all gzip, zstd, or uncompressed tars (media
        types to match, Docker ones for a Docker manifest), tagged NEWTAG in the same layout.
        Layers already in that form are kept byte for byte. Uses the zstd CLI for zstd.
    ocitool.py mkindex LAYOUT NEWTAG TAG=OS/ARCH[/VARIANT] ...
        Writes an OCI image index over the given tagged manifests, tagged NEWTAG.
    ocitool.py push LAYOUT TAG HOST:PORT/REPO:REFTAG [--creds USER:PASS] [--docker]
        Pushes image (or index) TAG over plain HTTP exactly as stored. skopeo 1.9 can't be
        trusted with that: it always compresses layers for a registry, and it reuses a blob
        the registry already holds for the same uncompressed layer in another compression
        (its blob info cache), whatever --dest-compress-format says. Handles Basic and Bearer
        (token) authentication. --docker rewrites OCI media types to Docker ones.
    ocitool.py media-types < MANIFEST_JSON
        Prints the manifest's mediaType, then one line per layer (or per platform manifest of
        an index: "DIGEST OS/ARCH MEDIATYPE").
    ocitool.py digest < FILE
        Prints sha256:HEX of stdin.
"""
import base64
import gzip
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
TO_DOCKER = {
    OCI_MANIFEST: DOCKER_MANIFEST,
    OCI_INDEX: DOCKER_LIST,
    "application/vnd.oci.image.config.v1+json": "application/vnd.docker.container.image.v1+json",
    "application/vnd.oci.image.layer.v1.tar+gzip":
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.v1.tar": "application/vnd.docker.image.rootfs.diff.tar",
}


def die(msg):
    print("ocitool: " + msg, file=sys.stderr)
    sys.exit(1)


class Layout:
    def __init__(self, path):
        self.path = path
        self.index_path = os.path.join(path, "index.json")
        with open(self.index_path) as f:
            self.index = json.load(f)

    def blob_path(self, digest):
        alg, hexd = digest.split(":", 1)
        return os.path.join(self.path, "blobs", alg, hexd)

    def read_blob(self, digest):
        with open(self.blob_path(digest), "rb") as f:
            return f.read()

    def write_blob(self, data):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        p = self.blob_path(d)
        if not os.path.exists(p):
            with open(p + ".tmp", "wb") as f:
                f.write(data)
            os.rename(p + ".tmp", p)
        return d

    def add_blob_file(self, path):
        h = hashlib.sha256()
        size = 0
        with open(path, "rb") as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                h.update(b)
                size += len(b)
        d = "sha256:" + h.hexdigest()
        if not os.path.exists(self.blob_path(d)):
            shutil.move(path, self.blob_path(d))
        else:
            os.unlink(path)
        return d, size

    def descriptor(self, tag):
        for m in self.index.get("manifests", []):
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
                return m
        die("no tag %r in %s" % (tag, self.path))

    def set_tag(self, tag, desc):
        desc = dict(desc)
        desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
        ms = [m for m in self.index.get("manifests", [])
              if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
        ms.append(desc)
        self.index["manifests"] = ms
        with open(self.index_path + ".tmp", "w") as f:
            json.dump(self.index, f)
        os.rename(self.index_path + ".tmp", self.index_path)


def media_type_for(compression, docker):
    if docker:
        return {"gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "none": "application/vnd.docker.image.rootfs.diff.tar"}[compression]
    return {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
            "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
            "none": "application/vnd.oci.image.layer.v1.tar"}[compression]


def layer_compression(media_type):
    if media_type.endswith("gzip"):
        return "gzip"
    if media_type.endswith("zstd"):
        return "zstd"
    return "none"


def cmd_recompress(layout, tag, newtag, compression):
    lo = Layout(layout)
    desc = lo.descriptor(tag)
    man = json.loads(lo.read_blob(desc["digest"]))
    docker = man.get("mediaType") == DOCKER_MANIFEST
    if docker and compression == "zstd":
        die("Docker manifests cannot have zstd layers")
    for layer in man["layers"]:
        have = layer_compression(layer["mediaType"])
        if have == compression:
            continue
        src = lo.blob_path(layer["digest"])
        fd, tmp = tempfile.mkstemp(dir=os.path.join(layout, "blobs"))
        with os.fdopen(fd, "wb") as out:
            if have == "gzip":
                reader = gzip.open(src, "rb")
            elif have == "zstd":
                reader = subprocess.Popen(["zstd", "-dcq", src], stdout=subprocess.PIPE).stdout
            else:
                reader = open(src, "rb")
            if compression == "gzip":
                with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as g:
                    shutil.copyfileobj(reader, g, 1 << 20)
            elif compression == "zstd":
                z = subprocess.Popen(["zstd", "-cq", "-3"], stdin=subprocess.PIPE, stdout=out)
                shutil.copyfileobj(reader, z.stdin, 1 << 20)
                z.stdin.close()
                if z.wait():
                    die("zstd failed")
            else:
                shutil.copyfileobj(reader, out, 1 << 20)
            reader.close()
        layer["digest"], layer["size"] = lo.add_blob_file(tmp)
        layer["mediaType"] = media_type_for(compression, docker)
    data = json.dumps(man).encode()
    lo.set_tag(newtag, {"mediaType": desc["mediaType"], "digest": lo.write_blob(data),
                        "size": len(data)})


def cmd_mkindex(layout, newtag, specs):
    lo = Layout(layout)
    manifests = []
    for spec in specs:
        tag, _, plat = spec.partition("=")
        parts = plat.split("/")
        if len(parts) < 2:
            die("platform must be OS/ARCH[/VARIANT]: %r" % spec)
        d = lo.descriptor(tag)
        p = {"architecture": parts[1], "os": parts[0]}
        if len(parts) > 2:
            p["variant"] = parts[2]
        manifests.append({"mediaType": d.get("mediaType", OCI_MANIFEST), "digest": d["digest"],
                          "size": d["size"], "platform": p})
    idx = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    data = json.dumps(idx).encode()
    lo.set_tag(newtag, {"mediaType": OCI_INDEX, "digest": lo.write_blob(data),
                        "size": len(data)})


class Registry:
    """A minimal plain-HTTP registry client with Basic and Bearer authentication."""

    def __init__(self, hostport, creds):
        self.hostport = hostport
        self.creds = creds
        self.auth = None

    def basic(self):
        return "Basic " + base64.b64encode(self.creds.encode()).decode()

    def raw(self, method, url, headers=None, body=None):
        u = urllib.parse.urlsplit(url)
        c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=120)
        path = u.path + ("?" + u.query if u.query else "")
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def login(self, challenge, scope):
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if not self.creds:
                die("registry wants credentials (Basic) and none were given")
            self.auth = self.basic()
            return
        p = {}
        for part in params.split(","):
            k, _, v = part.strip().partition("=")
            p[k] = v.strip('"')
        q = {"service": p.get("service", ""), "scope": scope}
        headers = {"Authorization": self.basic()} if self.creds else {}
        st, _, body = self.raw("GET", p["realm"] + "?" + urllib.parse.urlencode(q), headers)
        if st != 200:
            die("token server %s answered %d: %s" % (p["realm"], st, body[:200]))
        j = json.loads(body)
        self.auth = "Bearer " + (j.get("token") or j.get("access_token"))

    def request(self, method, path_or_url, scope, headers=None, body=None):
        url = path_or_url if "://" in path_or_url else "http://%s%s" % (self.hostport,
                                                                      path_or_url)
        for _ in range(2):
            h = dict(headers or {})
            if self.auth:
                h["Authorization"] = self.auth
            st, rh, data = self.raw(method, url, h, body)
            if st == 401 and "www-authenticate" in rh:
                self.login(rh["www-authenticate"], scope)
                continue
            return st, rh, data
        return st, rh, data

    def push_blob(self, repo, digest, path_fn, scope):
        st, _, _ = self.request("HEAD", "/v2/%s/blobs/%s" % (repo, digest), scope)
        if st == 200:
            return
        st, rh, body = self.request("POST", "/v2/%s/blobs/uploads/" % repo, scope,
                                    {"Content-Length": "0"}, b"")
        if st != 202:
            die("starting upload of %s: %d %s" % (digest, st, body[:300]))
        loc = rh["location"]
        if "://" not in loc:
            loc = "http://%s%s" % (self.hostport, loc)
        loc += ("&" if "?" in loc else "?") + "digest=" + urllib.parse.quote(digest)
        with open(path_fn(digest), "rb") as f:
            data = f.read()
        st, _, body = self.request("PUT", loc, scope,
                                   {"Content-Type": "application/octet-stream",
                                    "Content-Length": str(len(data))}, data)
        if st != 201:
            die("uploading %s: %d %s" % (digest, st, body[:300]))

    def push_manifest(self, repo, ref, media_type, data, scope):
        st, _, body = self.request("PUT", "/v2/%s/manifests/%s" % (repo, ref), scope,
                                   {"Content-Type": media_type,
                                    "Content-Length": str(len(data))}, data)
        if st != 201:
            die("putting manifest %s: %d %s" % (ref, st, body[:300]))


def cmd_push(layout, tag, ref, creds, docker):
    lo = Layout(layout)
    hostport, _, rest = ref.partition("/")
    repo, _, reftag = rest.rpartition(":")
    if not repo or "@" in rest:
        die("reference must be HOST:PORT/REPO:TAG: %r" % ref)
    scope = "repository:%s:pull,push" % repo
    reg = Registry(hostport, creds)
    written = {}  # blob digests rewritten to Docker media types: old -> (new digest, data)

    def convert(data, mt):
        j = json.loads(data)
        j["mediaType"] = TO_DOCKER.get(mt, mt)
        if "config" in j:
            j["config"]["mediaType"] = TO_DOCKER.get(j["config"]["mediaType"],
                                                     j["config"]["mediaType"])
        for l in j.get("layers", []):
            if l["mediaType"] not in TO_DOCKER:
                die("no Docker media type for %s" % l["mediaType"])
            l["mediaType"] = TO_DOCKER[l["mediaType"]]
        for m in j.get("manifests", []):
            nd, nsize = written[m["digest"]]
            m["mediaType"], m["digest"], m["size"] = DOCKER_MANIFEST, nd, nsize
        return json.dumps(j).encode(), j["mediaType"]

    def push_one(desc, ref_for):
        data = lo.read_blob(desc["digest"])
        j = json.loads(data)
        mt = j.get("mediaType") or desc["mediaType"]
        if mt in (OCI_INDEX, DOCKER_LIST):
            for m in j["manifests"]:
                push_one(m, None)
        else:
            for b in [j["config"]] + j["layers"]:
                reg.push_blob(repo, b["digest"], lo.blob_path, scope)
        if docker:
            data, mt = convert(data, mt)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        written[desc["digest"]] = (digest, len(data))
        reg.push_manifest(repo, ref_for or digest, mt, data, scope)
        return digest

    print(push_one(lo.descriptor(tag), reftag))


def cmd_media_types():
    j = json.load(sys.stdin)
    print(j.get("mediaType", "(none)"))
    for l in j.get("layers", []):
        print(l["mediaType"])
    for m in j.get("manifests", []):
        p = m.get("platform", {})
        plat = "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
        print("%s %s %s" % (m["digest"], plat or "-", m["mediaType"]))


def main():
    a = sys.argv[1:]
    if not a:
        die("usage: see the top of " + sys.argv[0])
    cmd = a.pop(0)
    if cmd == "recompress" and len(a) == 4 and a[3] in ("gzip", "zstd", "none"):
        cmd_recompress(*a)
    elif cmd == "mkindex" and len(a) >= 3:
        cmd_mkindex(a[0], a[1], a[2:])
    elif cmd == "push" and len(a) >= 3:
        creds, docker = "", False
        rest = a[3:]
        while rest:
            o = rest.pop(0)
            if o == "--creds" and rest:
                creds = rest.pop(0)
            elif o == "--docker":
                docker = True
            else:
                die("unknown option %s" % o)
        cmd_push(a[0], a[1], a[2], creds, docker)
    elif cmd == "media-types" and not a:
        cmd_media_types()
    elif cmd == "digest" and not a:
        print("sha256:" + hashlib.sha256(sys.stdin.buffer.read()).hexdigest())
    else:
        die("bad arguments; usage: see the top of " + sys.argv[0])


if __name__ == "__main__":
    main()
