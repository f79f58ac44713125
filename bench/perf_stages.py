#!/usr/bin/env python3
"""perf_stages.py SCRIPT.txt HZ RUNS - where store_ingest_file spends its CPU time.

Reads `perf script -F tid,ip,sym,dso` output of `perf record -F HZ --call-graph dwarf` on
`ingest_speed --only-ingest --runs RUNS` and prints a markdown table: CPU milliseconds per
ingest for each stage of the ingest pass, by thread (store/ingest.c: a receiving thread that
hashes, writes and cuts chunks; a decoder thread that inflates and parses tar; the commit on the
receiving thread at the end).

Each sample goes to the first stage one of its frames names. The decoder thread is any thread
that ever shows decoder_main in a stack. Frames in OpenSSL's and ISA-L's assembly do not unwind:
a sample whose stack ends there is counted by its leaf library. Samples of the harness (reading
the file into memory, store_open, removing the store) are left out.
"""
import collections
import sys

HARNESS = "harness"
# (stage, frame names); the first match wins, in this order
STAGES = [
    (HARNESS, ("rm_fn", "ftw_startup", "buf_append", "_IO_fread", "sha256_buf",
               "store_layers_list", "store_open", "store_close", "_dl_")),
    ("index_serialize (zlib of the checkpoint windows)", ("index_serialize",)),
    ("index_make_chunks (pread + SHA-256 of chunks after the pass)", ("index_make_chunks",)),
    ("commit (LMDB transactions, rename, fsyncs)", ("store_layer_commit", "store_reserve",
                                                  "store_unreserve", "mdb_txn_commit")),
    ("fdatasync of the blob", ("fdatasync",)),
    ("chunk hashes as checkpoints arrive (chunker_cut)", ("chunker_cut", "chunker_")),
    ("sync_file_range (start writeback)", ("sync_file_range",)),
    ("write() of the blob file (copy into the page cache)", ("write_all", "flush_writes",
                                                             "libc_write", "ksys_write")),
    ("tar parser + index entries", ("tar_parser_push", "index_add_entry", "tar_out")),
    ("inflate: ISA-L + CRC + checkpoints", ("decode_huffman", "isal_inflate", "crc32_gzip",
                                            "codec_indexer", "gz_")),
    ("SHA-256 of the stream", ("SHA256_Update", "sha256_update")),
    ("hand-off between threads (locks, wake-ups)", ("pthread_cond", "pthread_mutex", "futex",
                                                   "submit")),
    ("copy into the pipe buffers", ("ingest_data", "on_data")),
]
READ = "read() of the source file (a pull reads curl's buffers instead)"


def stage(frames):
    syms = [s for s, _ in frames]
    for name, keys in STAGES[:1]:
        if any(k in s for s in syms for k in keys):
            return name
    if any("feed_fd" in s for s in syms) and any("libc_read" in s or "ksys_read" in s
                                                 for s in syms):
        return READ
    for name, keys in STAGES[1:]:
        if any(k in s for s in syms for k in keys):
            return name
    dso = frames[0][1] if frames else ""
    if "libcrypto" in dso:
        return "SHA-256 (stack ends in OpenSSL's assembly: the stream or chunk hashes)"
    if "libisal" in dso:
        return "inflate: ISA-L + CRC + checkpoints"
    return "other (kernel, libc)"


def main():
    path, hz, runs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    samples = []  # (tid, frames)
    tid, frames = None, []
    for line in open(path, errors="replace"):
        if not line.strip():
            if tid is not None:
                samples.append((tid, frames))
            tid, frames = None, []
        elif not line.startswith(("\t", "        ")):
            tid = line.split()[0]
        else:
            parts = line.strip().split(None, 1)
            rest = parts[1] if len(parts) > 1 else ""
            sym, _, dso = rest.rpartition(" (")
            frames.append((sym, dso.rstrip(")")))
    if tid is not None:
        samples.append((tid, frames))
    decoders = {t for t, f in samples if any("decoder_main" in s for s, _ in f)}
    count = collections.Counter()
    per_thread = collections.Counter()
    for t, f in samples:
        st = stage(f)
        if st == HARNESS:
            continue
        th = "decoder" if t in decoders else "receiving"
        count[(th, st)] += 1
        per_thread[th] += 1
    if not count:
        sys.exit("perf_stages: no samples")
    ms = 1000.0 / hz / runs
    print("| thread | stage | CPU ms per ingest |")
    print("|---|---|---|")
    for th in ("receiving", "decoder"):
        if not per_thread[th]:
            continue
        for (t, st), v in sorted(count.items(), key=lambda kv: -kv[1]):
            if t == th and v * ms >= 1:
                print("| %s | %s | %.0f |" % (th, st, v * ms))
        print("| %s | **all** | **%.0f** |" % (th, per_thread[th] * ms))


if __name__ == "__main__":
    main()
