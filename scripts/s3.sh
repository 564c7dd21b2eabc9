#!/usr/bin/env bash
# Starts (and stops) the S3-compatible server the S3 backend's tests run against: moto's
# server (PyPI `moto[server]`, pinned), bound to 127.0.0.1 on a free port, with request
# signing checked (IAM auth on), one bucket and one access key made for the tests. moto keeps
# objects in memory; DIR holds its log, its pid file and the credentials.
#
#   eval "$(scripts/s3.sh start DIR)"   # prints `export S3_ENDPOINT=...`, `S3_BUCKET`,
#                                       # `S3_ACCESS_KEY_ID`, `S3_SECRET_ACCESS_KEY`, `S3_REGION`
#   scripts/s3.sh stop DIR              # kills exactly the server whose pid file is in DIR
#
# moto is installed, when missing, into a virtualenv under S3_SERVER_HOME (default
# ~/.cache/tower-http-cache/moto-MOTO_VERSION): about 75 s on a fresh machine, once. Why moto:
# it implements PutObject's If-None-Match and If-Match (conditional writes) and multipart
# uploads with S3's 5 MiB minimum part size, and checks SigV4 signatures, so bad credentials
# are refused as by S3. Everything but the export lines goes to stderr, so the output can be
# eval'ed.
set -euo pipefail

MOTO_VERSION=5.2.5
BUCKET=http-cache-tests
REGION=us-east-1

usage() {
    echo "usage: $0 start DIR | stop DIR" >&2
    exit 2
}

log() {
    echo "s3.sh: $*" >&2
}

die() {
    log "error: $*"
    exit 1
}

[[ $# -eq 2 ]] || usage
command=$1
dir=$2
home=${S3_SERVER_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/tower-http-cache/moto-$MOTO_VERSION}

install_moto() {
    if [[ -x $home/bin/moto_server ]] && "$home/bin/python" -c 'import moto, boto3' 2>/dev/null; then
        return
    fi
    command -v python3 >/dev/null || die "python3 is needed to install moto"
    log "installing moto[server]==$MOTO_VERSION from PyPI into $home"
    local started=$SECONDS
    rm -rf "$home"
    mkdir -p "$(dirname "$home")"
    python3 -m venv "$home" >&2 || die "python3 -m venv $home failed (Debian: apt-get install python3-venv)"
    "$home/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2 ||
        die "pip install moto[server]==$MOTO_VERSION failed"
    log "moto installed in $((SECONDS - started)) s"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    install_moto
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ -e $dir/moto.pid ]]; then
        die "$dir already holds a pid file: run '$0 stop $dir' first"
    fi
    local port
    port=$(free_port)
    # The first requests (the set-up below) go unauthenticated; every later one must be signed
    # by the access key the set-up makes, or moto answers 403 as S3 would.
    INITIAL_NO_AUTH_ACTION_COUNT=4 MOTO_ALLOW_NONEXISTENT_REGION=true \
        nohup "$home/bin/moto_server" -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
    echo $! >"$dir/moto.pid"
    local up=0
    for _ in $(seq 1 150); do
        if python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
            "$port" 2>/dev/null; then
            up=1
            break
        fi
        kill -0 "$(cat "$dir/moto.pid")" 2>/dev/null || die "moto_server exited (see $dir/moto.log)"
        sleep 0.1
    done
    [[ $up -eq 1 ]] || die "moto_server did not listen on 127.0.0.1:$port within 15 s (see $dir/moto.log)"

    # Four unauthenticated actions: the user, its policy, its key, the bucket.
    "$home/bin/python" - "http://127.0.0.1:$port" "$BUCKET" "$REGION" >"$dir/credentials" <<'EOF' ||
import sys

import boto3

endpoint, bucket, region = sys.argv[1:]
anon = dict(endpoint_url=endpoint, region_name=region,
            aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **anon)
iam.create_user(UserName="http-cache-tests")
iam.put_user_policy(
    UserName="http-cache-tests",
    PolicyName="everything",
    PolicyDocument='{"Version": "2012-10-17", "Statement": '
    '[{"Effect": "Allow", "Action": "*", "Resource": "*"}]}',
)
key = iam.create_access_key(UserName="http-cache-tests")["AccessKey"]
boto3.client("s3", **anon).create_bucket(Bucket=bucket)
print(key["AccessKeyId"], key["SecretAccessKey"])
EOF
        die "setting up the bucket and the access key failed (see $dir/moto.log)"
    local key_id secret
    read -r key_id secret <"$dir/credentials"
    log "moto on 127.0.0.1:$port, bucket $BUCKET; stop with: $0 stop $dir"
    echo "export S3_ENDPOINT=http://127.0.0.1:$port"
    echo "export S3_BUCKET=$BUCKET"
    echo "export S3_REGION=$REGION"
    echo "export S3_ACCESS_KEY_ID=$key_id"
    echo "export S3_SECRET_ACCESS_KEY=$secret"
}

stop() {
    [[ -d $dir ]] || die "no such directory: $dir"
    local pid
    pid=$(cat "$dir/moto.pid" 2>/dev/null || true)
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
        log "stopped moto (pid $pid)"
    fi
    rm -f "$dir/moto.pid"
}

case $command in
start) start ;;
stop) stop ;;
*) usage ;;
esac
