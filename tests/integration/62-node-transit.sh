#!/bin/bash
# A bit flipped in transit between two nodes (a proxy between C and A flips one bit of A's
# stream, once): the frame fails authentication, the link ends with nothing of it delivered,
# and C's pull gets what it lacks from B; its layers equal A's byte for byte. Then a flood of
# connections with garbage from another address: A rate-limits and drops them, and goes on
# serving its peers.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-node.sh"

T=$TEST_TMPDIR
registry_with_stress_image

pa=$(free_port) pb=$(free_port) pc=$(free_port) pp=$(free_port)
A=$T/A B=$T/B C=$T/C

start_node nodeA "$A" "$pa"
start_node nodeB "$B" "$pb" "$pa"
wait_until 15 has_peers "$B" 1
"$AFSP_BIN" --data "$A" pull "$REGISTRY/stress:1" >/dev/null
"$AFSP_BIN" --data "$B" pull "$name@$digest" >/dev/null
kill_bg "$REGISTRY_PID"

# C reaches A through the proxy, which flips a bit 200 KB into A's stream to C. The proxy is C's
# only seed: C finds B through A (the DHT), and has a link to A before it learns A's own address
# (with B as a seed too, a DHT message to A could dial A directly before the proxied link was up,
# and the pair would keep that link instead).
start_bg flipproxy "$PY" "$LIB_DIR/flipproxy.py" "$pp" "$pa" 200000
PROXY_LOG=$BG_LOG
wait_port "$pp" 15 "$BG_PID"
start_node nodeC "$C" "$pc" "$pp"
wait_until 15 has_peers "$C" 2
"$AFSP_BIN" --data "$C" pull "$name@$digest" >/dev/null
grep -q flipped "$PROXY_LOG" || fail "the proxy flipped no bit: A sent C under 200 KB"
# The flipped frame ended C's link to A (or, had it hit a length, stalled it): never a bad chunk.
errs=$(($(counter "$C" peer_errors) + $(counter "$C" stalls)))
((errs >= 1)) || fail "C did not notice the flipped bit"
assert_eq 0 "$(counter "$C" bad_chunks)" "bad chunks on C"
for l in $(cd "$A/blobs/sha256" && ls); do
    cmp "$A/blobs/sha256/$l" "$C/blobs/sha256/$l" || fail "blob $l on C differs from A's"
done

# 300 connections at once from 127.0.0.2, each sending garbage (C's link to A, which the flipped
# bit ended, is back first).
wait_until 15 has_peers "$A" 2
"$PY" - "$pa" <<'PYEOF'
import socket, sys
conns = []
for i in range(300):
    s = socket.socket()
    s.bind(("127.0.0.2", 0))
    try:
        s.connect(("127.0.0.1", int(sys.argv[1])))
        s.sendall(bytes(range(256)) * 4)
    except OSError:
        pass
    conns.append(s)
for s in conns:
    s.close()
PYEOF
limited() { (($(counter "$A" rate_limited) >= 1)); }
wait_until 15 limited
served=$(counter "$A" chunks_served)
"$AFSP_BIN" --data "$C" prune --percent 100 >/dev/null
"$AFSP_BIN" --data "$C" pull "$name@$digest" >/dev/null
(($(counter "$A" chunks_served) > served)) || fail "A served nothing after the flood"
assert_eq 2 "$(peer_count "$A")" "A's peers after the flood"
assert_eq 0 "$(counter "$C" bad_chunks)" "bad chunks on C"
log "ok"
