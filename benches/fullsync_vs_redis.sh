#!/usr/bin/env bash
# A full sync of 1M entries (10-byte keys "key000000".., 64-byte values of 'v'), Redis beside
# leafcache in one run. Redis: a replica attaching to a filled master (`REPLICAOF`, Redis's default
# diskless sync, started at once: `repl-diskless-sync-delay 0`), timed from the command until the
# replica holds every key with its link up; bytes from the master's `total_net_repl_output_bytes`. leafcache: `cargo bench --bench replication --
# resync`, with and without frame compression (`LEAFCACHE_BENCH_COMPRESS=0`).
#
#   bash benches/fullsync_vs_redis.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/support/redis.sh
runs=${1:-3}
N=${N:-1000000}

# Each server in a fresh directory: a dump.rdb left in the working directory would be loaded.
data=$(mktemp -d)
master=$(free_port)
mkdir -p "$data/master"
redis-server --port "$master" --dir "$data/master" --save '' --appendonly no --daemonize yes \
    --repl-diskless-sync-delay 0 \
    --logfile /tmp/fullsync-master.log --pidfile /tmp/fullsync-master.pid
trap 'redis-cli -p "$master" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$data"' EXIT
until redis-cli -p "$master" ping >/dev/null 2>&1; do sleep 0.05; done
python3 -c "
import sys
v = 'v' * 64
w = sys.stdout.write
for i in range($N):
    k = 'key%06d' % i
    w('*3\r\n\$3\r\nSET\r\n\$%d\r\n%s\r\n\$64\r\n%s\r\n' % (len(k), k, v))
" | redis-cli -p "$master" --pipe >/dev/null
echo "master holds $(redis-cli -p "$master" dbsize) keys"

repl_bytes() {
    redis-cli -p "$master" info stats | tr -d '\r' | sed -n 's/^total_net_repl_output_bytes://p'
}

for run in $(seq 1 "$runs"); do
    replica=$(free_port)
    mkdir -p "$data/replica-$run"
    redis-server --port "$replica" --dir "$data/replica-$run" --save '' --appendonly no --daemonize yes \
        --logfile /tmp/fullsync-replica.log --pidfile /tmp/fullsync-replica.pid
    until redis-cli -p "$replica" ping >/dev/null 2>&1; do sleep 0.05; done
    before=$(repl_bytes)
    start=$(date +%s%N)
    redis-cli -p "$replica" replicaof 127.0.0.1 "$master" >/dev/null
    until redis-cli -p "$replica" info replication | grep -q 'master_link_status:up' &&
          [ "$(redis-cli -p "$replica" dbsize 2>/dev/null)" = "$N" ]; do
        sleep 0.005
    done
    end=$(date +%s%N)
    after=$(repl_bytes)
    echo "redis full sync, run $run: $(( (end - start) / 1000000 )) ms, $(( (after - before) / 1000 )) kB"
    redis-cli -p "$replica" shutdown nosave >/dev/null 2>&1 || true
done

cargo bench --bench replication --no-run --quiet 2>/dev/null
bench=$(ls -t target/release/deps/replication-* | grep -v '\.d$' | head -1)
for run in $(seq 1 "$runs"); do
    echo "leafcache, run $run, compressed:   $("$bench" resync | grep 'full sync')"
    echo "leafcache, run $run, uncompressed: $(LEAFCACHE_BENCH_COMPRESS=0 "$bench" resync | grep 'full sync')"
done
