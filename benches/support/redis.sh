# Shared by the shell benches that run leafcache beside redis-server: installs redis-server and
# redis-tools from Debian's packages if they are missing, builds the release binary, and defines
# `free_port` (a port the OS hands out on loopback). Sourced from the repository's root.

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq redis-server redis-tools >/dev/null
fi

cargo build --release --quiet
BIN=target/release/leafcache

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
        shuf -i 20000-60000 -n 1
}
