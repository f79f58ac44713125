#!/usr/bin/env python3
"""A TCP proxy on loopback that flips one bit in transit.

    flipproxy.py LISTEN_PORT TARGET_PORT AFTER

Forwards each connection to 127.0.0.1:TARGET_PORT. In the target-to-client direction of the
first connection that carries more than AFTER bytes that way, it flips the lowest bit of the
byte at offset AFTER; every other byte passes unchanged. Prints "flipped" on stdout when it has. Used by the
test of a bit flip between two nodes: what a network cannot be made to do on demand.
"""
import socket
import sys
import threading

listen_port, target_port, after = (int(x) for x in sys.argv[1:4])
state = {"flipped": False}
lock = threading.Lock()


def pump(src, dst, flip_at):
    seen = 0
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            with lock:
                flip = (flip_at is not None and not state["flipped"] and
                        seen <= flip_at < seen + len(data))
                state["flipped"] = state["flipped"] or flip
            if flip:
                b = bytearray(data)
                b[flip_at - seen] ^= 1
                data = bytes(b)
                print("flipped", flush=True)
            seen += len(data)
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(client):
    try:
        target = socket.create_connection(("127.0.0.1", target_port))
    except OSError:
        client.close()
        return
    threading.Thread(target=pump, args=(client, target, None), daemon=True).start()
    threading.Thread(target=pump, args=(target, client, after),
                     daemon=True).start()


srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", listen_port))
srv.listen(16)
while True:
    c, _ = srv.accept()
    serve(c)
