#!/bin/bash
# pgha-healthcheck [HOST:PORT] — the image's HEALTHCHECK: exit 0 when the
# node's REST API (default 127.0.0.1:8008) answers GET /liveness with 200,
# i.e. pgha's HA loop ran within ttl (Patroni's /liveness). It speaks plain
# HTTP through bash's /dev/tcp, so the image needs no curl; a REST API with
# TLS (restapi.certfile) needs another check.
set -u
addr=${1:-127.0.0.1:8008}
host=${addr%:*} port=${addr##*:}
exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET /liveness HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$addr" >&3
IFS=' ' read -r -t 3 _ code _ <&3 || exit 1
[ "$code" = 200 ]
