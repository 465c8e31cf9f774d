#!/bin/bash
# etcd-healthcheck [HOST:PORT] — the image's HEALTHCHECK: exit 0 when the
# member's client port (default 127.0.0.1:2379) answers GET /health with
# 200 and "health":"true" (it sees a leader). Plain HTTP through bash's
# /dev/tcp, so the image needs neither curl nor etcdctl.
set -u
addr=${1:-127.0.0.1:2379}
host=${addr%:*} port=${addr##*:}
exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET /health HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$addr" >&3
reply=$(timeout 3 cat <&3) || exit 1
case $reply in
"HTTP/1."?" 200 "*'"health":"true"'*) exit 0 ;;
*) exit 1 ;;
esac
