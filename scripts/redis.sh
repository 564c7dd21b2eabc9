#!/usr/bin/env bash
# Starts (and stops) the Redis servers the Redis backend's tests run against: one standalone
# server and a cluster of three masters, all bound to 127.0.0.1 on free ports, without
# persistence, daemonized, with their data, logs and pid files in DIR.
#
#   eval "$(scripts/redis.sh start DIR)"   # prints `export REDIS_URL=...` and
#                                          # `export REDIS_CLUSTER_URL=...`
#   scripts/redis.sh stop DIR              # kills exactly the servers whose pid files are in DIR
#
# `start` installs redis-server and redis-tools (redis-cli) with apt-get when redis-server is
# not on PATH (as root, or through sudo otherwise). Everything but the export lines goes to
# stderr, so the output can be eval'ed.
set -euo pipefail

usage() {
    echo "usage: $0 start DIR | stop DIR" >&2
    exit 2
}

log() {
    echo "redis.sh: $*" >&2
}

die() {
    log "error: $*"
    exit 1
}

[[ $# -eq 2 ]] || usage
command=$1
dir=$2

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

install_redis() {
    if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null ||
        die "redis-server is not on PATH and there is no apt-get to install it; install Redis 7 by hand"
    log "installing redis-server and redis-tools with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq >&2 || log "apt-get update failed; trying the install anyway"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >&2 ||
        die "apt-get install redis-server redis-tools failed"
    command -v redis-server >/dev/null || die "redis-server still not on PATH after the install"
}

# Prints N distinct free TCP ports on 127.0.0.1 (bound to port 0 and released; a cluster node
# also needs its port + 10000 free, which is checked too).
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys

def free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()

want = int(sys.argv[1])
ports = []
while len(ports) < want:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    if port in ports or port + 10000 > 65535 or not free(port + 10000):
        continue
    ports.append(port)
print(" ".join(map(str, ports)))
EOF
}

# Waits (up to 10 s) until the server on PORT answers PING.
wait_ping() {
    local port=$1
    for _ in $(seq 1 100); do
        if [[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]]; then
            return 0
        fi
        sleep 0.1
    done
    die "redis-server on port $port did not answer PING within 10 s (see $dir/*.log)"
}

# Starts one daemonized server on PORT in its own directory; extra arguments are passed on.
start_server() {
    local name=$1 port=$2
    shift 2
    local node_dir="$dir/$name"
    mkdir -p "$node_dir"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$node_dir" \
        --save '' --appendonly no --daemonize yes \
        --pidfile "$dir/$name.pid" --logfile "$dir/$name.log" "$@" ||
        die "redis-server $name on port $port failed to start (see $dir/$name.log)"
}

start() {
    install_redis
    command -v python3 >/dev/null || die "python3 is needed to find free ports"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if compgen -G "$dir/*.pid" >/dev/null; then
        die "$dir already holds pid files: run '$0 stop $dir' first"
    fi

    read -r standalone c1 c2 c3 <<<"$(free_ports 4)"
    start_server standalone "$standalone"
    local cluster_ports=("$c1" "$c2" "$c3")
    local port
    for port in "${cluster_ports[@]}"; do
        start_server "cluster-$port" "$port" --cluster-enabled yes \
            --cluster-config-file "$dir/cluster-$port/nodes.conf" --cluster-node-timeout 5000
    done
    for port in "$standalone" "${cluster_ports[@]}"; do
        wait_ping "$port"
    done

    local nodes=()
    for port in "${cluster_ports[@]}"; do
        nodes+=("127.0.0.1:$port")
    done
    timeout 60 redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >&2 ||
        die "redis-cli --cluster create failed"
    # Every node must agree the cluster is up before a client connects.
    local ok=0
    for _ in $(seq 1 200); do
        ok=1
        for port in "${cluster_ports[@]}"; do
            if ! timeout 2 redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null |
                grep -q '^cluster_state:ok'; then
                ok=0
            fi
        done
        [[ $ok -eq 1 ]] && break
        sleep 0.1
    done
    [[ $ok -eq 1 ]] || die "the cluster did not reach cluster_state:ok within 20 s"

    log "standalone on $standalone, cluster on $c1 $c2 $c3; stop with: $0 stop $dir"
    echo "export REDIS_URL=redis://127.0.0.1:$standalone/0"
    echo "export REDIS_CLUSTER_URL=redis+cluster://127.0.0.1:$c1,127.0.0.1:$c2,127.0.0.1:$c3"
}

stop() {
    [[ -d $dir ]] || die "no such directory: $dir"
    local pidfile pid
    shopt -s nullglob
    for pidfile in "$dir"/*.pid; do
        pid=$(cat "$pidfile" 2>/dev/null || true)
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" || true
            # Up to 5 s for a clean exit, then SIGKILL.
            for _ in $(seq 1 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$pid" 2>/dev/null; then
                kill -9 "$pid" || true
            fi
            log "stopped $(basename "$pidfile" .pid) (pid $pid)"
        fi
        rm -f "$pidfile"
    done
}

case $command in
start) start ;;
stop) stop ;;
*) usage ;;
esac
