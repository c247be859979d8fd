#!/usr/bin/env bash
# The Python package beside its peers (benches/python/peers.py), in one run: makes a virtualenv
# under target/, installs the package (release build) and the peers, starts a redis-server on a
# Unix socket, runs the comparison. Usage: benches/python/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/bench-venv
if ! "$venv/bin/python" -c 'import maturin, cachetools, cachebox, moka_py, diskcache, redis' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q maturin==1.16.0 cachetools==8.0.2 cachebox==6.2.10 moka-py==0.5.0 \
    diskcache==5.6.3 redis==8.1.0
fi
PATH="$PWD/$venv/bin:$PATH" "$venv/bin/pip" install -q --no-build-isolation ./python
dir=$(mktemp -d)
trap 'redis-cli -s "$dir/redis.sock" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
redis-server --port 0 --unixsocket "$dir/redis.sock" --save '' --appendonly no --daemonize yes \
  --logfile "$dir/redis.log" --dir "$dir"
for _ in $(seq 100); do [ -S "$dir/redis.sock" ] && break; sleep 0.05; done
redis-server --version
"$venv/bin/python" benches/python/peers.py "$dir/redis.sock"
