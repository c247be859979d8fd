#!/usr/bin/env bash
# A sharded leafcache (3 shards, each a hub and two leaves, one `leafcache up` process) against a
# 3-master redis-server cluster (three processes, no replicas), both driven by
# `redis-benchmark --cluster` with its defaults otherwise:
#
#   bash benches/cluster_vs_redis.sh            # 3 rounds
#   LEAVES=0 bash benches/cluster_vs_redis.sh   # each shard a single node
#
# redis-benchmark reads each side's `CLUSTER NODES`, opens its clients to every master and sends
# each command to the master of its key's slot:
#   redis-benchmark --cluster -t set,get -n 200000 -c 50 -d 64 -r 100000 -P {1,16}
# Servers alternate every round; prints the median requests/s of each and leafcache / redis.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-200000}
# Leaves per shard beside its hub (LEAVES=0: each shard one node, as the Redis masters are).
LEAVES=${LEAVES:-2}

. benches/support/redis.sh

WORK=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

REDIS_PORTS=()
for i in 1 2 3; do
    port=$(free_port)
    REDIS_PORTS+=("$port")
    mkdir -p "$WORK/redis-$i"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/redis-$i" --save '' --appendonly no \
        --cluster-enabled yes --cluster-config-file nodes.conf --logfile /dev/null --daemonize no &
    PIDS+=($!)
done
for port in "${REDIS_PORTS[@]}"; do
    for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
done
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${REDIS_PORTS[@]}") --cluster-replicas 0 --cluster-yes >/dev/null
for _ in $(seq 200); do
    redis-cli -p "${REDIS_PORTS[0]}" cluster info | grep -q 'cluster_state:ok' && break
    sleep 0.05
done

TOPOLOGY="$WORK/sharded.toml"
printf '[cluster]\nname = "bench"\nsecret = "bench-secret"\n[defaults]\ncapacity = 1000000\n' >"$TOPOLOGY"
LEAF_PORT=""
for shard in red green blue; do
    resp=$(free_port)
    [ -z "$LEAF_PORT" ] && LEAF_PORT=$resp
    printf '[[node]]\nname = "%s-hub"\nshard = "%s"\nlisten = "127.0.0.1:%s"\nresp = "127.0.0.1:%s"\n' \
        "$shard" "$shard" "$(free_port)" "$resp" >>"$TOPOLOGY"
    for leaf in $(seq "$LEAVES"); do
        printf '[[node]]\nname = "%s-%s"\nshard = "%s"\nhub = "%s-hub"\nresp = "127.0.0.1:%s"\n' \
            "$shard" "$leaf" "$shard" "$shard" "$(free_port)" >>"$TOPOLOGY"
    done
done
"$BIN" up "$TOPOLOGY" --loglevel error >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 200); do redis-cli -p "$LEAF_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

RESULTS=$(mktemp)
for round in $(seq "$ROUNDS"); do
    for pipeline in 1 16; do
        for server in redis leafcache; do
            port=${REDIS_PORTS[0]}
            [ "$server" = leafcache ] && port=$LEAF_PORT
            redis-benchmark --cluster -p "$port" -t set,get -n "$REQUESTS" -c 50 -d 64 -r 100000 \
                -P "$pipeline" --csv 2>/dev/null |
                awk -F'"' -v s="$server" -v p="$pipeline" 'NR > 1 { print s, p, $2, $4 }' >>"$RESULTS"
        done
    done
    echo "round $round done" >&2
done

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf '%-6s %-4s %12s %12s %8s\n' test P redis leafcache ratio
for pipeline in 1 16; do
    for t in SET GET; do
        r=$(awk -v p="$pipeline" -v t="$t" '$1 == "redis" && $2 == p && $3 == t { print $4 }' "$RESULTS" | median)
        l=$(awk -v p="$pipeline" -v t="$t" '$1 == "leafcache" && $2 == p && $3 == t { print $4 }' "$RESULTS" | median)
        printf '%-6s %-4s %12.0f %12.0f %8.2f\n' "$t" "$pipeline" "$r" "$l" "$(awk -v a="$l" -v b="$r" 'BEGIN { print a / b }')"
    done
done
