#!/usr/bin/env bash
# Memory of counters and hashes beside redis-server, in one run: loads 1M counters (one INCR
# each) and 100k hashes of 10 fields into redis-server through `redis-cli --pipe`, and reads the
# memory it added (INFO used_memory and the process's RSS) and MEMORY USAGE of one key of each;
# then runs `cargo bench --bench merged_memory` for leafcache's figures.
#
#   bash benches/merged_vs_redis.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq redis-server redis-tools >/dev/null
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --dir "$(mktemp -d)" --save '' --appendonly no --daemonize no --logfile /dev/null &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

used() { redis-cli -p "$PORT" info memory | awk -F: '/^used_memory:/ { print $2 }' | tr -d '\r'; }
rss() { awk '/VmRSS/ { print $2 * 1024 }' "/proc/$PID/status"; }
resp() { python3 -c '
import sys
out = sys.stdout.buffer
def cmd(*a):
    out.write(b"*%d\r\n" % len(a))
    for x in a:
        x = x.encode()
        out.write(b"$%d\r\n%s\r\n" % (len(x), x))
if sys.argv[1] == "counters":
    for i in range(1_000_000):
        cmd("INCR", "c%09d" % i)
else:
    for i in range(100_000):
        cmd("HSET", "h%09d" % i, *[s for f in range(10) for s in ("f%d" % f, "v%07d" % (i + f))])
' "$1"; }

for what in counters hashes; do
    redis-cli -p "$PORT" flushall >/dev/null
    u0=$(used); r0=$(rss)
    resp "$what" | redis-cli -p "$PORT" --pipe >/dev/null
    u1=$(used); r1=$(rss)
    if [ "$what" = counters ]; then
        n=1000000; sample=c000000007
    else
        n=1000000; sample=h000000007   # per field: 100k hashes x 10 fields
    fi
    echo "redis $what: used_memory +$(( (u1 - u0) / n )) B, RSS +$(( (r1 - r0) / n )) B per $( [ $what = counters ] && echo counter || echo field ); MEMORY USAGE $sample = $(redis-cli -p "$PORT" memory usage $sample) B"
done
cargo bench --bench merged_memory 2>/dev/null | grep resident
