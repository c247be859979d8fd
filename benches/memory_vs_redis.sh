#!/usr/bin/env bash
# Resident memory per key through RESP, leafcache against redis-server in one run.
#
#   bash benches/memory_vs_redis.sh            # 1M keys, 3 rounds
#   KEYS=200000 ROUNDS=1 bash benches/memory_vs_redis.sh
#
# Starts both servers empty on free loopback ports (redis-server --save '' --appendonly no;
# leafcache serve with room for every key), reads each process's VmRSS from /proc, fills each
# with the same KEYS distinct keys of 11 bytes ("k" and 10 digits) and 64-byte values (distinct
# per key) through `redis-cli --pipe`, reads VmRSS again, and prints the growth per key of each,
# their ratio, and redis's own `used_memory` growth. A fresh pair of servers per round; medians.
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=${KEYS:-1000000}
ROUNDS=${ROUNDS:-3}

. benches/support/redis.sh
rss() { awk '/VmRSS/ { print $2 * 1024 }' "/proc/$1/status"; }
wait_up() {
    for _ in $(seq 200); do
        redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "server on port $1 did not come up" >&2
    exit 1
}

FILL=$(mktemp)
# The RESP commands of the fill, generated once: SET k0000000000 <64 bytes> ...
python3 - "$KEYS" >"$FILL" <<'PY'
import sys, hashlib
n = int(sys.argv[1])
out = sys.stdout.buffer
for i in range(n):
    k = b"k%010d" % i
    v = hashlib.sha256(k).hexdigest()[:64].encode()
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
PY

RESULTS=$(mktemp)
PIDS=""
trap 'kill $PIDS 2>/dev/null || true; rm -f "$FILL" "$RESULTS"' EXIT
for round in $(seq "$ROUNDS"); do
    RP=$(free_port)
    redis-server --port "$RP" --bind 127.0.0.1 --dir "$(mktemp -d)" --save '' --appendonly no --daemonize no --logfile /dev/null &
    RPID=$!
    LP=$(free_port)
    "$BIN" serve --resp "127.0.0.1:$LP" --capacity $((KEYS * 2)) --loglevel warn &
    LPID=$!
    PIDS="$RPID $LPID"
    wait_up "$RP"
    wait_up "$LP"
    for server in redis leafcache; do
        port=$RP pid=$RPID
        [ "$server" = leafcache ] && port=$LP pid=$LPID
        u0=$(redis-cli -p "$port" info memory | awk -F: '/^used_memory:/ { print $2 }' | tr -d '\r')
        r0=$(rss "$pid")
        redis-cli -p "$port" --pipe <"$FILL" >/dev/null
        n=$(redis-cli -p "$port" dbsize | tr -d '\r')
        [ "$n" = "$KEYS" ] || { echo "$server holds $n keys, not $KEYS" >&2; exit 1; }
        r1=$(rss "$pid")
        echo "$server rss $(( (r1 - r0) / KEYS ))" >>"$RESULTS"
        if [ "$server" = redis ]; then
            u1=$(redis-cli -p "$port" info memory | awk -F: '/^used_memory:/ { print $2 }' | tr -d '\r')
            echo "redis used $(( (u1 - u0) / KEYS ))" >>"$RESULTS"
        fi
    done
    kill $PIDS
    wait $PIDS 2>/dev/null || true
    PIDS=""
    echo "round $round done" >&2
done

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
r=$(awk '$1 == "redis" && $2 == "rss" { print $3 }' "$RESULTS" | median)
u=$(awk '$1 == "redis" && $2 == "used" { print $3 }' "$RESULTS" | median)
l=$(awk '$1 == "leafcache" && $2 == "rss" { print $3 }' "$RESULTS" | median)
echo "keys=$KEYS rounds=$ROUNDS (11 B keys, 64 B values)"
echo "redis-server: RSS +$r B/key (used_memory +$u B/key)"
echo "leafcache:    RSS +$l B/key"
awk -v a="$l" -v b="$r" 'BEGIN { printf "ratio leafcache / redis RSS: %.2f\n", a / b }'
