#!/bin/bash
# An outsider without the cluster key opens connections to a node's peer port and says nothing:
# from 200 loopback addresses (127.0.1.1-200), 800 a second for 15 s, each held open (the
# per-source limit lets 200 sources start 1,000 a second). Once 5,000
# are in, the node's seed is killed and started again (the node must dial it again) and a new
# member joins: both get their link while the flood goes on. (Before issue 15's fix the silent
# connections filled the link table of 4,096 until their handshakes timed out, 10 s, and both
# were refused for as long as the flood lasted.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-node.sh"

T=$TEST_TMPDIR
pa=$(free_port) pt=$(free_port) pm=$(free_port)
start_node nodeA "$T/A" "$pa"
PIDA=$BG_PID
start_node nodeT "$T/T" "$pt" "$pa"
wait_until 15 has_peers "$T/T" 1
node_id() { "$AFSP_BIN" --data "$1" stats --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["stats"]["id"])'; }
idA=$(node_id "$T/A")
links_to() { "$AFSP_BIN" --data "$1" peers --json | grep -q "$2"; }

# the flood: one line "opened N" every 100 connections, on to 12,000, then held until killed
start_bg flood timeout 120 "$PY" -c '
import resource, signal, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
port, conns, t0 = int(sys.argv[1]), [], time.monotonic()
for i in range(12000):
    s = socket.socket()
    s.bind(("127.0.1.%d" % (i % 200 + 1), 0))
    try:
        s.connect(("127.0.0.1", port))
    except OSError as e:
        print("connect failed:", e, flush=True)
    conns.append(s)
    if (i + 1) % 100 == 0:
        print("opened", i + 1, flush=True)
    time.sleep(max(0.0, t0 + (i + 1) / 800 - time.monotonic()))  # the pace, not a wait for anything
print("holding", flush=True)
signal.pause()' "$pt"
FLOOD=$BG_PID FLOOD_LOG=$BG_LOG
opened() { awk '/^opened/ { n = $2 } END { print n + 0 }' "$FLOOD_LOG"; }
flooding() { (($(opened) >= $1)); }

wait_until 30 flooding 5000
log "5,000 silent connections in: the seed dies and comes back"
kill -9 "$PIDA"
wait "$PIDA" 2>/dev/null || true
start_node nodeA2 "$T/A" "$pa"
wait_until 10 links_to "$T/T" "$idA"
! grep -q holding "$FLOOD_LOG" || fail "T reached its seed only once the flood was over"
n1=$(opened)
log "T dialed its seed again with $n1 silent connections opened"

log "a new member joins through T"
start_node nodeM "$T/M" "$pm" "$pt"
wait_until 10 has_peers "$T/M" 1
! grep -q holding "$FLOOD_LOG" || fail "M reached T only once the flood was over"
n2=$(opened)
log "M linked to T with $n2 silent connections opened"
kill -0 "$FLOOD" || fail "the flood ended early: $(tail -3 "$FLOOD_LOG")"
! grep -q "connect failed" "$FLOOD_LOG" || fail "the flood could not connect: $(grep -m1 'connect failed' "$FLOOD_LOG")"
# the table never filled: no connection, silent or not, was refused at the cap; the silent ones
# pushed each other out instead
crowded=$(counter "$T/T" handshakes_crowded) refused=$(counter "$T/T" links_refused)
assert_eq 0 "$refused" "connections T refused at its link cap"
((crowded > 0)) || fail "no silent handshake was crowded out (the flood never filled the table?)"
log "T crowded out $crowded unfinished handshakes, refused none"
