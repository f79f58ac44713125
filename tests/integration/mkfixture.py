#!/usr/bin/python3
"""Contents of the fixture image (see build_fixture_image in lib.sh). Run as root.

    mkfixture.py populate ROOTFS [--files N] [--seed S]   layer 2: everything but whiteouts
    mkfixture.py modify ROOTFS                             layer 3: deletions and changes
    mkfixture.py extra-layer OUT.tar                       layer 4: a hand-made PAX tar with
                                                           an opaque directory, nanosecond
                                                           mtimes and a re-created whited-out file
    mkfixture.py stress-layer N OUT.tar                    layer N (1..5) of the stress image
                                                           (build_stress_image in lib.sh)

Layers 2 and 3 are written into an unpacked umoci bundle and made into layers by
`umoci repack` (which rounds mtimes to whole seconds and never writes opaque whiteouts);
layer 4 is written by this script, since umoci cannot produce those, and added with
`umoci raw add-layer`. Everything is deterministic for a given seed except directory mtimes
of layers 2 and 3 (umoci records the time they were changed).
"""
import io
import os
import random
import shutil
import stat
import subprocess
import struct
import sys
import tarfile

LONG1 = "L" * 150  # a 150-character component (ext4 allows 255)
LONG2 = "M" * 100
LONG3 = "N" * 60


def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def set_mtime(path, ns):
    os.utime(path, ns=(ns, ns), follow_symlinks=False)


def populate(root, nfiles, seed):
    rng = random.Random(seed)
    j = lambda *p: os.path.join(root, *p)

    # 1. many small files over nested dirs: data/dXX/dYY/fNNNN
    words = [b"alpha", b"beta", b"gamma", b"delta", b"layer", b"chunk", b"\n", b" "]
    for i in range(nfiles):
        d1, d2 = (i // 100) % 20, (i // 10) % 10
        r = rng.random()
        if r < 0.12:
            size = 0
        elif r < 0.65:
            size = rng.randint(1, 2000)
        elif r < 0.95:
            size = rng.randint(2001, 16384)
        else:
            size = rng.randint(16385, 131072)
        if rng.random() < 0.5:
            data = rng.randbytes(size)  # incompressible
        else:  # compressible text
            data = b"".join(rng.choice(words) for _ in range(size // 4 + 1))[:size]
        write(j("data", "d%02d" % d1, "d%02d" % d2, "f%04d" % i), data)
    write(j("data", "big.bin"), rng.randbytes(3 * 1024 * 1024 + 123))
    write(j("data", "zeros.bin"), bytes(1024 * 1024))
    write(j("data", "empty"), b"")

    # 2. awkward names
    for name in ["with space.txt", "ünïcödé-☃.txt", "-leading-dash", ".hidden", "a:colon",
                 "quote'\"", "back\\slash", "percent%20", "x" * 255]:
        write(j("names", name), name.encode() + b"\n")

    # 3. symlinks
    os.makedirs(j("links"))
    os.symlink("../data/d00/d00/f0002", j("links", "rel"))
    os.symlink("/data/d00/d00/f0003", j("links", "abs"))
    os.symlink("../does/not/exist", j("links", "dangling"))
    os.symlink("../data/d00", j("links", "dirlink"))
    os.symlink("self", j("links", "self"))
    os.symlink("../" + "t" * 200 + "/target", j("links", "longtarget"))
    os.symlink("../dev/null", j("links", "to-dev"))

    # 4. hardlinks
    write(j("hard", "a"), b"one inode, three names\n")
    os.link(j("hard", "a"), j("hard", "b"))
    os.makedirs(j("hard", "sub"))
    os.link(j("hard", "a"), j("hard", "sub", "c"))
    write(j("hard", "empty1"), b"")
    os.link(j("hard", "empty1"), j("hard", "empty2"))
    write(j("hard", "suid"), b"#!/bin/sh\necho suid\n", 0o755)
    os.chown(j("hard", "suid"), 1234, 5678)
    os.chmod(j("hard", "suid"), 0o4755)
    os.link(j("hard", "suid"), j("hard", "suid-link"))

    # 5. device nodes and a fifo
    os.makedirs(j("dev"))
    os.mknod(j("dev", "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(j("dev", "loop0"), 0o660 | stat.S_IFBLK, os.makedev(7, 0))
    os.mknod(j("dev", "bigminor"), 0o600 | stat.S_IFCHR, os.makedev(240, 70000))
    os.mkfifo(j("dev", "fifo"))
    os.chmod(j("dev", "fifo"), 0o644)
    os.chmod(j("dev", "null"), 0o666)
    os.chmod(j("dev", "loop0"), 0o660)

    # 6. long paths: > 100 and > 255 characters in all, one component of 150
    deep = j("long", LONG1, LONG2, LONG3)
    write(os.path.join(deep, "file-at-depth"), b"deep\n")
    os.link(os.path.join(deep, "file-at-depth"), os.path.join(deep, "hardlink-at-depth"))
    os.symlink("file-at-depth", os.path.join(deep, "symlink-at-depth"))
    write(j("long", "a" * 99), b"99\n")
    write(j("long", "b" * 100), b"100\n")
    write(j("long", "c" * 101), b"101\n")

    # 7. modes
    write(j("modes", "setuid"), b"suid\n", 0o4755)
    write(j("modes", "setgid"), b"sgid\n", 0o2755)
    write(j("modes", "sticky-file"), b"sticky\n", 0o1644)
    write(j("modes", "all-special"), b"ugt\n", 0o7777)
    write(j("modes", "private"), b"private\n", 0o600)
    write(j("modes", "none"), b"no permissions\n", 0o000)
    write(j("modes", "exec-only"), b"exec only\n", 0o111)
    os.makedirs(j("modes", "sticky-dir"))
    os.chmod(j("modes", "sticky-dir"), 0o1777)
    os.makedirs(j("modes", "setgid-dir"))
    write(j("modes", "setgid-dir", "inside"), b"in setgid dir\n")
    os.chmod(j("modes", "setgid-dir"), 0o2775)
    os.makedirs(j("modes", "dir-0700"))
    write(j("modes", "dir-0700", "inside"), b"in 0700 dir\n")
    os.chmod(j("modes", "dir-0700"), 0o700)
    os.makedirs(j("modes", "dir-0555"))
    write(j("modes", "dir-0555", "inside"), b"in 0555 dir\n")
    os.chmod(j("modes", "dir-0555"), 0o555)

    # 8. owners (chown clears setuid, so modes are set after)
    write(j("owners", "u1234"), b"owned by 1234:5678\n", 0o640)
    os.chown(j("owners", "u1234"), 1234, 5678)
    write(j("owners", "suid-1234"), b"suid, owned by 1234\n")
    os.chown(j("owners", "suid-1234"), 1234, 5678)
    os.chmod(j("owners", "suid-1234"), 0o6755)
    os.makedirs(j("owners", "dir-1000"))
    write(j("owners", "dir-1000", "inside"), b"x\n")
    os.chown(j("owners", "dir-1000"), 1000, 1000)
    os.symlink("u1234", j("owners", "link-42"))
    os.lchown(j("owners", "link-42"), 42, 43)
    write(j("owners", "big-ids"), b"ids beyond ustar's 7 octal digits\n")
    os.chown(j("owners", "big-ids"), 3000000, 3000001)
    write(j("owners", "nobody"), b"65534\n")
    os.chown(j("owners", "nobody"), 65534, 65534)

    # 9. xattrs (user.* and trusted.* as plain os.setxattr; the capability as setcap writes it)
    write(j("xattrs", "file"), b"has xattrs\n")
    os.setxattr(j("xattrs", "file"), "user.plain", b"hello")
    os.setxattr(j("xattrs", "file"), "user.binary", b"\x00\xff\x01\x02\x00")
    os.setxattr(j("xattrs", "file"), "user.long", bytes(rng.randrange(256) for _ in range(3000)))
    os.setxattr(j("xattrs", "file"), "trusted.afsp", b"trusted value")
    # umoci repack drops empty-valued xattrs (a PAX record with an empty value means "delete"),
    # so this one never reaches the image: it is here to show that
    write(j("xattrs", "empty-value"), b"xattr with an empty value\n")
    os.setxattr(j("xattrs", "empty-value"), "user.empty", b"")
    os.makedirs(j("xattrs", "dir"))
    os.setxattr(j("xattrs", "dir"), "user.on-dir", b"directory xattr")
    write(j("xattrs", "hardlinked"), b"xattr + hardlink\n")
    os.setxattr(j("xattrs", "hardlinked"), "user.shared", b"same inode")
    os.link(j("xattrs", "hardlinked"), j("xattrs", "hardlinked2"))
    os.symlink("file", j("xattrs", "symlink"))
    os.setxattr(j("xattrs", "symlink"), "trusted.on-link", b"symlink xattr",
                follow_symlinks=False)
    os.makedirs(j("caps"))
    with open("/bin/busybox", "rb") as f:
        write(j("caps", "ping"), f.read(), 0o755)
    # setcap (libcap2-bin, installed by scripts/deps.sh) must be there: a missing tool fails
    subprocess.run(["setcap", "cap_net_raw+ep", j("caps", "ping")], check=True)

    # 10. things layers 3 and 4 change
    for n in ("a", "b"):
        write(j("opaque", n), b"lower " + n.encode() + b"\n")
    write(j("opaque", "sub", "c"), b"lower c\n")
    write(j("todelete", "x"), b"x\n")
    write(j("todelete", "sub", "y"), b"y\n")
    write(j("dir2file", "child"), b"child\n")
    write(j("file2dir"), b"a file, for now\n")
    write(j("tobemodified"), b"version 1\n")

    # 11. mtimes, set last (creating entries changes a directory's mtime)
    os.makedirs(j("times", "dir"))
    write(j("times", "dir", "f"), b"f\n")
    write(j("times", "nsec"), b"nanoseconds (umoci rounds them to seconds)\n")
    write(j("times", "y1980"), b"1980\n")
    write(j("times", "y2100"), b"2100\n")
    os.symlink("nsec", j("times", "link"))
    set_mtime(j("times", "nsec"), 981173106123456789)      # 2001-02-03 04:05:06.123456789
    set_mtime(j("times", "y1980"), 315532800 * 10**9)       # 1980-01-01
    set_mtime(j("times", "y2100"), 4102444800 * 10**9)      # 2100-01-01
    set_mtime(j("times", "link"), 1000000000 * 10**9)
    set_mtime(j("times", "dir"), 1234567890 * 10**9)
    set_mtime(j("times"), 1111111111 * 10**9)


def modify(root):
    j = lambda *p: os.path.join(root, *p)
    os.unlink(j("data", "d00", "d00", "f0000"))               # file whiteout
    shutil.rmtree(j("data", "d01"))                            # directory whiteout
    shutil.rmtree(j("todelete"))
    os.unlink(j("hard", "b"))                                  # one name of three
    with open(j("data", "d02", "d00", "f0200"), "ab") as f:     # content change
        f.write(b"appended in layer 3\n")
    os.chmod(j("data", "d02", "d00", "f0201"), 0o600)          # metadata-only changes
    os.chown(j("data", "d02", "d00", "f0202"), 4321, 8765)
    os.setxattr(j("data", "d02", "d00", "f0203"), "user.added", b"in layer 3")
    write(j("tobemodified"), b"version 2, longer than version 1\n")
    shutil.rmtree(j("dir2file"))                               # type changes
    write(j("dir2file"), b"was a directory\n")
    os.unlink(j("file2dir"))
    write(j("file2dir", "child"), b"was a file\n")
    os.unlink(j("links", "rel"))
    write(j("links", "rel"), b"was a symlink\n")
    write(j("data", "d00", "new-in-layer3"), b"new\n")


def tar_add(t, name, typ, mtime_ns=None, data=b"", mode=0o644, linkname="", xattrs=None):
    ti = tarfile.TarInfo(name)
    ti.type = typ
    ti.mode = mode
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.linkname = linkname
    ti.size = len(data) if typ == tarfile.REGTYPE else 0
    ti.mtime = (mtime_ns or 1700000000 * 10**9) // 10**9
    pax = {}
    if mtime_ns is not None and mtime_ns % 10**9:
        pax["mtime"] = "%d.%09d" % (mtime_ns // 10**9, mtime_ns % 10**9)
    for k, v in (xattrs or {}).items():
        pax["SCHILY.xattr." + k] = v
    ti.pax_headers = pax
    t.addfile(ti, io.BytesIO(data) if typ == tarfile.REGTYPE else None)


def extra_layer(out):
    D, F, L, H = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
        # an opaque directory: lower a, b, sub/c vanish, only "new" remains
        tar_add(t, "opaque", D, mode=0o755)
        tar_add(t, "opaque/.wh..wh..opq", F, mode=0o644)
        tar_add(t, "opaque/new", F, data=b"upper new\n")
        # a file whited out in layer 3, created again
        tar_add(t, "data", D, mode=0o755)
        tar_add(t, "data/d00", D, mode=0o755)
        tar_add(t, "data/d00/d00", D, mode=0o755)
        tar_add(t, "data/d00/d00/f0000", F, data=b"re-created in layer 4\n")
        # nanosecond mtimes, which umoci repack cannot write
        tar_add(t, "nsec", D, 1600000000987654321, mode=0o755)
        tar_add(t, "nsec/file", F, 1614834367123456789, b"nanoseconds\n",
                xattrs={"user.layer4": "pax xattr"})
        tar_add(t, "nsec/link", L, 1234567890000000001, linkname="file")
        tar_add(t, "nsec/hardlink", H, 1614834367123456789, linkname="nsec/file")
        tar_add(t, "nsec/half", F, 1500000000500000000, b"half a second\n")
        # a whiteout of something that never existed
        tar_add(t, "nsec/.wh.ghost", F)



# ---------------------------------------------------------------------------------------------
# the stress image (build_stress_image in lib.sh, which lists what each layer holds): five
# hand-made PAX layers covering every OCI layer-merging rule. Everything is fixed: names,
# contents (seeded), modes, owners, mtimes (with nanoseconds), entry order, so the layer tars
# are byte for byte the same on every run. Hardlink entries carry their target's metadata
# (umoci ignores a hardlink header's mode/owner/mtime, so it must not matter).

STRESS_LAYERS = 5
ST0 = 1600000000 * 10**9  # base mtime; entries add varied seconds and nanoseconds
# the full capability set (=ep): VFS_CAP_REVISION_2 | EFFECTIVE, permitted 0xffffffff/0x1ff
CAP_ALL_EP = bytes.fromhex("01000002ffffffff00000000ff01000000000000")


def posix_acl(*entries):
    """The kernel's system.posix_acl_* value: version 2, then (tag, perm, id) little-endian,
    in the kernel's order (by tag, then id)."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


NOID = 0xFFFFFFFF
# user::rw- user:65534:r-- group::r-- mask::r-- other::---
ACL_FILE = posix_acl((0x01, 6, NOID), (0x02, 4, 65534), (0x04, 4, NOID), (0x10, 4, NOID),
                     (0x20, 0, NOID))
# default: user::rwx user:65534:r-x group::r-x mask::r-x other::r-x
ACL_DIR_DEFAULT = posix_acl((0x01, 7, NOID), (0x02, 5, 65534), (0x04, 5, NOID),
                            (0x10, 5, NOID), (0x20, 5, NOID))
LONG_A = "p" * 200                        # 200 bytes
LONG_B = "\u00e9" * 100                   # 100 characters, 200 bytes in UTF-8
LONG_C = "q" * 255                        # the longest component ext4 allows
LONG_DIR = "long/%s/%s/%s" % (LONG_A, LONG_B, LONG_C)
LONG_GONE = "g" * 150                     # a long name whited out in layer 2
NMANY = 3000                              # many/: files, none deleted
NBULK = 2000                              # bulk/: files, about half whited out in layer 2


def bulk_deleted():
    """The bulk/ files whited out in layer 2: 1000 of the 2000, chosen by a fixed seed."""
    return sorted(random.Random(2).sample(range(NBULK), 1000))


def small_data(rng, i):
    r = rng.random()
    if r < 0.1:
        return b""
    n = rng.randint(1, 3000 if r < 0.9 else 20000)
    if r < 0.5:
        return rng.randbytes(n)
    return (b"file %d line " % i) * (n // 12 + 1)


def big_text(seed, size):
    """Compressible but not trivial: random words from a small vocabulary (gzip gets ~3:1 and
    writes a new deflate block every few dozen KiB)."""
    rng = random.Random(seed)
    words = [w.encode() for w in (
        "layer chunk index digest registry blob manifest whiteout opaque tar gzip zstd "
        "peer node cluster verify stream offset checkpoint inode xattr owner mode mtime "
        "0 1 2 3 4 5 6 7 8 9 a b c d e f").split()]
    out = bytearray()
    while len(out) < size:
        line = b" ".join(rng.choice(words) for _ in range(rng.randint(1, 16)))
        out += line + (b"\n" if rng.random() < 0.9 else b"\t")
    return bytes(out[:size])


class Stress:
    D, F, L, H = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
    C, B, P = tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE

    def __init__(self, out, layer):
        self.t = tarfile.open(out, "w", format=tarfile.PAX_FORMAT, encoding="utf-8")
        self.n = 0
        self.base = ST0 + layer * 10**12  # each layer's mtimes in their own range

    def add(self, name, typ, data=b"", mode=None, uid=0, gid=0, mtime=None, link="",
            xattrs=None, dev=(0, 0)):
        """mtime: nanoseconds since the epoch; None = a distinct one with nanoseconds."""
        self.n += 1
        if mtime is None:
            mtime = self.base + self.n * 1000003 * 1000 + self.n * 7919
        if mode is None:
            mode = 0o755 if typ == self.D else 0o777 if typ == self.L else 0o644
        ti = tarfile.TarInfo(name)
        ti.type = typ
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ""
        ti.linkname = link
        ti.size = len(data) if typ == self.F else 0
        ti.mtime = mtime // 10**9
        if typ in (self.C, self.B):
            ti.devmajor, ti.devminor = dev
        pax = {}
        if mtime % 10**9:
            pax["mtime"] = "%d.%09d" % (mtime // 10**9, mtime % 10**9)
        for k, v in (xattrs or {}).items():
            # binary values: tarfile writes them back byte for byte (hdrcharset=BINARY)
            pax["SCHILY.xattr." + k] = v.decode("utf-8", "surrogateescape")
        ti.pax_headers = pax
        self.t.addfile(ti, io.BytesIO(data) if typ == self.F else None)

    def whiteout(self, path):
        d, b = os.path.split(path)
        self.add(os.path.join(d, ".wh." + b), self.F, mtime=self.base)

    def close(self):
        self.t.close()


def stress_layer(n, out):
    s = Stress(out, n)
    D, F, L, H, C, B, P = s.D, s.F, s.L, s.H, s.C, s.B, s.P
    add, wh = s.add, s.whiteout
    if n == 1:
        # the root directory's own entry ("./"; layer 5 has another)
        add(".", D, mode=0o755, mtime=1500000000000000007)
        # type changes: f2d2f file -> dir -> file; d2l dir -> symlink; l2d symlink -> dir
        add("types", D)
        add("types/f2d2f", F, b"a file in layer 1\n")
        add("types/d2l", D)
        add("types/d2l/inner", F, b"inside a dir that becomes a symlink\n")
        add("types/d2l/sub", D)
        add("types/d2l/sub/deep", F, b"deep\n")
        add("types/d2l-stays", D, xattrs={"user.on": b"the dir"})
        add("types/d2l-stays/inner", F, b"gone with its dir\n")
        add("types/d2l-stays/sub", D)
        add("types/d2l-stays/sub/deep", F, b"deep\n")
        add("types/l2d", L, link="nowhere")
        add("types/f2l", F, b"a file that becomes a symlink\n")
        add("types/fifo2file", P)
        # whiteouts (layer 2): a file, a subtree, a dir re-created in layer 3
        add("wh", D)
        add("wh/file1", F, b"whited out in layer 2, a directory in layer 3\n")
        add("wh/keep", F, b"stays\n")
        add("wh/tree", D)
        add("wh/tree/a", F, b"a\n")
        add("wh/tree/sub", D)
        add("wh/tree/sub/b", F, b"b\n")
        add("wh/tree/sub/deeper", D, mode=0o700)
        add("wh/tree/sub/deeper/c", F, b"c\n")
        add("wh/tree/sub/link", L, link="../a")
        add("wh/recreate", D, mode=0o700, uid=1000, gid=1000,
            xattrs={"user.old": b"layer 1"})
        add("wh/recreate/old1", F, b"old 1\n")
        add("wh/recreate/sub", D)
        add("wh/recreate/sub/old2", F, b"old 2\n")
        # opaque (layer 2) and more added to it (layer 3)
        add("opq", D)
        add("opq/l1a", F, b"lower a\n")
        add("opq/.hidden", F, b"lower hidden\n")
        add("opq/sub", D)
        add("opq/sub/l1c", F, b"lower c\n")
        add("opq/link", L, link="l1a")
        # a directory whose metadata layer 2 changes (its contents stay)
        add("meta", D, mode=0o755, uid=0, gid=0, mtime=1500000000111111111,
            xattrs={"user.l1": b"from layer 1", "user.both": b"layer 1 value"})
        add("meta/child", F, b"child of meta\n")
        add("meta/sub", D, mode=0o750)
        add("meta/sub/x", F, b"x\n")
        # 3000 files in one directory
        add("many", D)
        rng = random.Random(1)
        for i in range(NMANY):
            add("many/f%04d" % i, F, small_data(rng, i), mode=(0o644, 0o600, 0o755)[i % 3])
        # 2000 files, half of them whited out in layer 2
        add("bulk", D)
        rng = random.Random(3)
        for i in range(NBULK):
            add("bulk/b%04d" % i, F, small_data(rng, i))
        # UTF-8 names
        add("utf8", D)
        add("utf8/donn\u00e9es", D)
        add("utf8/donn\u00e9es/r\u00e9sum\u00e9.txt", F, "r\u00e9sum\u00e9\n".encode())
        add("utf8/\u65e5\u672c\u8a9e", D)
        add("utf8/\u65e5\u672c\u8a9e/\u30d5\u30a1\u30a4\u30eb", F, "\u30d5\u30a1\u30a4\u30eb\n".encode())
        add("utf8/\u65e5\u672c\u8a9e/\u6d88\u3059", F, b"whited out in layer 2\n")
        add("utf8/\U0001f433\U0001f680.txt", F, b"whale rocket\n")
        add("utf8/\U0001f4c1", D)
        add("utf8/\U0001f4c1/\u00fcber", L, link="../donn\u00e9es/r\u00e9sum\u00e9.txt")
        # long paths: components of 200, 200 (100 two-byte characters) and 255 bytes
        add("long", D)
        add("long/" + LONG_A, D)
        add("long/%s/%s" % (LONG_A, LONG_B), D)
        add(LONG_DIR, D)
        add(LONG_DIR + "/file-at-depth", F, b"deep file\n", mtime=1400000000000000005)
        add("long/%s/%s" % (LONG_A, LONG_GONE), F, b"whited out in layer 2\n")
        add("long/hardlink-to-deep", H, link=LONG_DIR + "/file-at-depth",
            mtime=1400000000000000005)
        add("long/symlink-to-deep", L, link=LONG_DIR[5:] + "/file-at-depth")
        # hardlinks: a group of three; a file linked to from layer 2 (and whited out in 3);
        # a group of three one of which layer 3 replaces; a group of four half whited out
        add("hl", D)
        add("hl/trio", D)
        trio = dict(mode=0o640, uid=1234, gid=5678, mtime=1400000000000000004)
        add("hl/trio/a", F, b"three names\n", **trio)
        add("hl/trio/b", H, link="hl/trio/a", **trio)
        add("hl/trio/sub", D)
        add("hl/trio/sub/c", H, link="hl/trio/a", **trio)
        add("hl/base", F, b"linked to from layer 2\n", mtime=1400000000000000001)
        add("hl/repl", D)
        add("hl/repl/x", F, b"old content of x, y and z\n", mtime=1400000000000000002)
        add("hl/repl/y", H, link="hl/repl/x", mtime=1400000000000000002)
        add("hl/repl/z", H, link="hl/repl/x", mtime=1400000000000000002)
        add("hl/quad", D)
        add("hl/quad/a", F, b"four names\n", mtime=1400000000000000003)
        add("hl/quad/b", H, link="hl/quad/a", mtime=1400000000000000003)
        add("hl/quad/sub", D)
        add("hl/quad/sub/c", H, link="hl/quad/a", mtime=1400000000000000003)
        add("hl/quad/sub/d", H, link="hl/quad/a", mtime=1400000000000000003)
        # contents that change per layer; empty files
        add("content", D)
        add("content/evolve", F, b"version 1\n")
        add("content/empty", F, b"")
        add("content/empty-then-data", F, b"")
        add("content/data-then-empty", F, b"data in layer 1\n")
        # modes, owners, devices, a fifo, xattrs
        add("modes", D)
        add("modes/setuid", F, b"suid\n", mode=0o4755)
        add("modes/setgid", F, b"sgid\n", mode=0o2711)
        add("modes/sticky-file", F, b"sticky\n", mode=0o1644)
        add("modes/all", F, b"ugt\n", mode=0o7777)
        add("modes/none", F, b"no permissions\n", mode=0o000)
        add("modes/sticky-dir", D, mode=0o1777)
        add("modes/setgid-dir", D, mode=0o2775, gid=70000)
        add("modes/setgid-dir/inside", F, b"in a setgid dir\n", gid=70000)
        add("owners", D)
        add("owners/u100000", F, b"100000:100001\n", uid=100000, gid=100001)
        add("owners/u4000000000", F, b"beyond 2^31\n", uid=4000000000, gid=4000000001)
        add("owners/suid-70000", F, b"suid 70000\n", mode=0o6755, uid=70000, gid=70001)
        add("owners/dir-65536", D, mode=0o750, uid=65536, gid=65537)
        add("owners/dir-65536/inside", F, b"x\n", uid=65536, gid=65537)
        add("owners/link", L, link="u100000", uid=70000, gid=70001)
        add("dev", D)
        add("dev/null", C, mode=0o666, dev=(1, 3))
        add("dev/sda", B, mode=0o660, gid=6, dev=(8, 0))
        add("dev/bigdev", B, mode=0o600, dev=(4095, 1048575))
        add("dev/fifo", P, mode=0o620)
        add("xattr", D)
        add("xattr/file", F, b"has xattrs\n", xattrs={
            "user.text": b"hello", "user.bin": b"\x00\xff\xfe\x01\x80",
            "security.capability": CAP_ALL_EP})
        add("xattr/dir", D, mode=0o711, xattrs={"user.dir": b"on a directory",
                                                "user.gone": b"not in layer 3"})
        add("xattr/dir/inside", F, b"x\n")
        add("xattr/changes", F, b"layer 1\n", xattrs={"user.v": b"1", "user.only1": b"x"})
        # POSIX ACLs: a file nobody (65534) may read only through its ACL, a directory with a
        # default ACL, and a file of the same mode without one
        add("acl", D)
        add("acl/granted", F, b"readable by 65534 through the ACL\n", mode=0o640,
            xattrs={"system.posix_acl_access": ACL_FILE})
        add("acl/plain", F, b"not readable by 65534\n", mode=0o640)
        add("acl/dir", D, mode=0o755, xattrs={"system.posix_acl_default": ACL_DIR_DEFAULT})
        # implicit parents: no entries for implicit/, implicit/a/, implicit/a/b/
        add("implicit/a/b/file", F, b"parents not in the tar\n")
        add("implicit/a/sibling", F, b"sibling\n")
    elif n == 2:
        add("types", D)
        add("types/f2d2f", D, mode=0o750)
        add("types/f2d2f/x", F, b"x in the directory of layer 2\n")
        add("types/f2d2f/sub", D)
        add("types/f2d2f/sub/y", F, b"y\n")
        add("types/d2l", L, link="f2d2f")
        add("types/d2l-stays", L, link="../wh/keep")
        add("types/l2d", D, mode=0o700, mtime=1500000000777777777)
        add("types/l2d/inside", F, b"inside a dir that was a symlink\n")
        add("types/f2l", L, link="../wh/keep")
        add("types/fifo2file", F, b"was a fifo\n")
        wh("wh/file1")
        wh("wh/tree")
        wh("wh/recreate")
        wh("wh/never-existed")
        wh("never-existed-at-root")
        wh("ghostdir/sub/never-existed")  # parents missing too: umoci creates nothing
        # an opaque dir with new entries before and after the marker: the marker hides only
        # the lower layers
        add("opq", D, mode=0o750, mtime=1500000000222222222)
        add("opq/l2first", F, b"added in layer 2, before the opaque marker\n")
        add("opq/.wh..wh..opq", F, mtime=s.base)
        add("opq/l2after", F, b"added in layer 2, after the opaque marker\n")
        add("opq/sub", D)
        add("opq/sub/l2c", F, b"layer 2 c\n")
        # an opaque marker in a directory no lower layer has
        add("opqnew", D)
        add("opqnew/.wh..wh..opq", F, mtime=s.base)
        add("opqnew/file", F, b"opaque over nothing\n")
        # new metadata for meta/, contents stay
        add("meta", D, mode=0o710, uid=100000, gid=100001, mtime=1500000000333333333,
            xattrs={"user.l2": b"from layer 2", "user.both": b"layer 2 value"})
        for i in bulk_deleted():
            wh("bulk/b%04d" % i)
        wh("utf8/\u65e5\u672c\u8a9e/\u6d88\u3059")
        wh("long/%s/%s" % (LONG_A, LONG_GONE))
        add("hl", D)
        add("hl/cross", H, link="hl/base", mtime=1400000000000000001)
        wh("hl/quad/sub")
        add("content", D)
        add("content/evolve", F, b"version 2, longer than version 1\n")
        add("content/empty-then-data", F, b"data in layer 2\n")
        add("content/data-then-empty", F, b"")
        # several MB of compressible text: many deflate blocks / zstd blocks
        add("bigdata", D)
        add("bigdata/text", F, big_text(4, 6 * 1024 * 1024 + 4321))
        add("implicit", D, mode=0o751, mtime=1500000000444444444)
    elif n == 3:
        add("types", D)
        add("types/f2d2f", F, b"a file again in layer 3\n", mode=0o600)
        add("wh", D)
        add("wh/file1", D, mode=0o755)
        add("wh/file1/now-a-dir", F, b"wh/file1 is a directory now\n")
        add("wh/recreate", D, mode=0o755, uid=0, gid=0, mtime=1500000000555555555)
        add("wh/recreate/new1", F, b"new 1\n")
        # more in the opaque dir of layer 2 (no opq/ entry: its metadata stays layer 2's)
        add("opq/l3more", F, b"added in layer 3\n")
        add("opq/sub/l3d", F, b"layer 3 d\n")
        add("meta/new-in-3", F, b"added to meta/ in layer 3\n")
        for i in bulk_deleted()[:10]:
            add("bulk/b%04d" % i, F, b"re-created in layer 3: %d\n" % i)
        add("hl", D)
        add("hl/repl", D)
        add("hl/repl/y", F, b"new content of y only\n", mtime=1400000000000000006)
        wh("hl/base")
        add("content", D)
        add("content/evolve", F, b"v3\n", mode=0o600, uid=42, gid=43)
        add("xattr", D)
        add("xattr/dir", D, mode=0o755, xattrs={"user.dir": b"changed in layer 3"})
        add("xattr/changes", F, b"layer 3\n", xattrs={"user.v": b"3"})
        add("late/implicit/file", F, b"implicit parents in layer 3\n")
        add("many/f0042", F, b"changed in layer 3\n")
    elif n == 4:
        add("hl", D)
        # hardlinks to a path layer 3 replaced, and to a link whose first name is gone
        add("hl/to-replaced", H, link="hl/repl/y", mtime=1400000000000000006)
        add("hl/cross2", H, link="hl/cross", mtime=1400000000000000001)
        add("content/evolve", F, b"version 4\n")
        add("types/d2l", D)
        add("types/d2l/back", F, b"d2l: dir -> symlink -> dir\n")
    elif n == 5:
        # the root again (umoci gives a root no layer names the time of the unpack)
        add(".", D, mode=0o755, mtime=1500000000555555557)
        add("content/evolve", F, b"version 5: the last\n")
        wh("types/l2d/inside")
        wh("many/f2999")
        add("zz-last", F, b"the last entry of the last layer\n")
    else:
        sys.exit("mkfixture: stress-layer N: N is 1..%d" % STRESS_LAYERS)
    s.close()

def main():
    a = sys.argv[1:]
    if len(a) >= 2 and a[0] == "populate":
        nfiles, seed = 2000, 1
        rest = a[2:]
        while rest:
            o = rest.pop(0)
            if o == "--files":
                nfiles = int(rest.pop(0))
                if nfiles < 300:
                    sys.exit("mkfixture: --files must be at least 300 (layer 3 changes d02)")
            elif o == "--seed":
                seed = int(rest.pop(0))
            else:
                sys.exit("mkfixture: unknown option " + o)
        populate(a[1], nfiles, seed)
    elif len(a) == 2 and a[0] == "modify":
        modify(a[1])
    elif len(a) == 2 and a[0] == "extra-layer":
        extra_layer(a[1])
    elif len(a) == 3 and a[0] == "stress-layer":
        stress_layer(int(a[1]), a[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
