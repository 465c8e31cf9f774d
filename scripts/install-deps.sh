#!/usr/bin/env bash
# Installs what pgha's build, tests and demo need on Debian 12, by package
# name. Idempotent: packages already present are left alone, and apt is only
# touched when something is missing.
set -euo pipefail

need=()
have_bin() { command -v "$1" >/dev/null 2>&1 || [ -x "$2" ]; }

have_bin initdb /usr/lib/postgresql/15/bin/initdb || need+=(postgresql-15)
have_bin psql /usr/bin/psql || need+=(postgresql-client-15)
have_bin pgbench /usr/bin/pgbench || need+=(postgresql-contrib)
have_bin etcd /usr/bin/etcd || need+=(etcd-server)
have_bin etcdctl /usr/bin/etcdctl || need+=(etcd-client)
have_bin haproxy /usr/sbin/haproxy || need+=(haproxy)
have_bin pgbouncer /usr/sbin/pgbouncer || need+=(pgbouncer)
have_bin prometheus-pgbouncer-exporter /usr/bin/prometheus-pgbouncer-exporter || need+=(prometheus-pgbouncer-exporter)
have_bin ip /usr/sbin/ip || need+=(iproute2)
# The fault suite (e2e/faults): partitions with nft; tc (iproute2) for
# netem delay and loss where the kernel has sch_netem.
have_bin nft /usr/sbin/nft || need+=(nftables)
have_bin tc /usr/sbin/tc || need+=(iproute2)
have_bin runuser /usr/sbin/runuser || need+=(util-linux)
have_bin make /usr/bin/make || need+=(make)
have_bin debootstrap /usr/sbin/debootstrap || need+=(debootstrap)
# Patroni itself: its patronictl is tested against pgha, and the migration
# script runs a Patroni cluster to move from.
have_bin patronictl /usr/bin/patronictl || need+=(patroni)
# vip-manager, the virtual IP that follows the leader key (e2e/faults
# vip_test.go runs one per node).
have_bin vip-manager /usr/bin/vip-manager || need+=(vip-manager)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${need[*]}; run as root or: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The packaged services (postgresql, etcd, haproxy, pgbouncer, patroni,
  # vip-manager) must not
  # start on install: pgha and its tests run their own instances.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Postgres refuses to run as root; tests and the demo run it as this user.
if ! id postgres >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  else
    echo "install-deps: OS user 'postgres' is missing; create it as root" >&2
    exit 1
  fi
fi
# Stop packaged services if a package started them anyway.
for svc in etcd haproxy pgbouncer patroni prometheus-pgbouncer-exporter vip-manager; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done
# vip-manager's postinst enables vip-manager.service (for the next boot),
# whose unfilled /etc/default/vip-manager makes it fail and restart in a
# loop: disable it. A VIP is configured by hand (see the README).
if [ -e /etc/systemd/system/multi-user.target.wants/vip-manager.service ] && [ "$(id -u)" -eq 0 ]; then
  if command -v deb-systemd-helper >/dev/null 2>&1; then
    deb-systemd-helper disable vip-manager.service >/dev/null 2>&1 || true
  fi
  rm -f /etc/systemd/system/multi-user.target.wants/vip-manager.service
fi
echo "install-deps: ok"
