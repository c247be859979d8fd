#!/usr/bin/env bash
# RESP door against redis-server, side by side in one run, with redis-benchmark as the client.
#
#   bash benches/resp_vs_redis.sh            # 3 rounds
#   ROUNDS=5 bash benches/resp_vs_redis.sh
#
# Installs redis-server and redis-tools from Debian's packages if they are missing, builds the
# release binary, starts both servers on free loopback ports, and runs
#   redis-benchmark -t ping,set,get,incr,hset,mset -n 200000 -c 50 -d 64 -r 100000 -P {1,16}
# (redis-benchmark's default list without the list, set and sorted-set tests, types leafcache
# does not have; its HSET test writes random fields of one hash, `myhash`)
# against each, alternating servers every round so that machine noise hits both alike. Prints
# the median requests/s of each and the ratio leafcache / redis.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-200000}

. benches/support/redis.sh

REDIS_PORT=$(free_port)
LEAF_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$(mktemp -d)" --save '' --appendonly no --daemonize no \
    --logfile /dev/null &
REDIS_PID=$!
"$BIN" serve --resp "127.0.0.1:$LEAF_PORT" --capacity 1000000 --loglevel warn &
LEAF_PID=$!
trap 'kill $REDIS_PID $LEAF_PID 2>/dev/null || true' EXIT

for port in "$REDIS_PORT" "$LEAF_PORT"; do
    for _ in $(seq 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.05
    done
done

RESULTS=$(mktemp)
for round in $(seq "$ROUNDS"); do
    for pipeline in 1 16; do
        for server in redis leafcache; do
            port=$REDIS_PORT
            [ "$server" = leafcache ] && port=$LEAF_PORT
            redis-benchmark -p "$port" -t "${TESTS:-ping,set,get,incr,hset,mset}" -n "$REQUESTS" -c 50 -d 64 -r 100000 \
                -P "$pipeline" --csv 2>/dev/null |
                awk -F'"' -v s="$server" -v p="$pipeline" 'NR > 1 { name = $2; gsub(/ /, "_", name); print s, p, name, $4 }' \
                    >>"$RESULTS"
        done
    done
    echo "round $round done" >&2
done

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf '%-20s %-4s %12s %12s %8s\n' test P redis leafcache ratio
for pipeline in 1 16; do
    for t in PING_INLINE PING_MBULK SET GET INCR HSET "MSET_(10_keys)"; do
        r=$(awk -v p="$pipeline" -v t="$t" '$1 == "redis" && $2 == p && $3 == t { print $4 }' "$RESULTS" | median)
        l=$(awk -v p="$pipeline" -v t="$t" '$1 == "leafcache" && $2 == p && $3 == t { print $4 }' "$RESULTS" | median)
        printf '%-20s %-4s %12.0f %12.0f %8.2f\n' "$t" "$pipeline" "$r" "$l" "$(awk -v a="$l" -v b="$r" 'BEGIN { print a / b }')"
    done
done
rm -f "$RESULTS"
