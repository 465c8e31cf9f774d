# One pgha node: Debian 12, PostgreSQL 15 and the pgha/pghactl binaries.
#
# The binaries are built on the host (Go 1.26 is not in Debian 12), so run
# `make build` first; then
#
#   docker build -t pgha/node .
#
# (debian:bookworm-slim comes from a registry, or from
# scripts/docker-base-image.sh where there is none.) docker-compose.yml runs
# three of these; see README.md, "Containers (docker-compose)".
#
# The container runs as the postgres user: pgha starts Postgres itself, no
# root and no user switch. tini is PID 1 and forwards SIGTERM to pgha, which
# hands the leader role over and stops Postgres cleanly (as the systemd
# unit's stop does), and reaps the processes Postgres leaves. Allow the
# stop enough time (docker stop -t 120, compose stop_grace_period).
#
# Configuration: /etc/pgha/node.yml (this image's default is
# docker/pgha/node.yml) plus PGHA_* environment overrides for the per-node
# keys and every password; no secret is in the image.
FROM debian:bookworm-slim

# Packages first: this layer changes only when the package list does.
# postgresql-common must not create its own "main" cluster, and no
# packaged service may start during the build.
RUN set -eux; \
	mkdir -p /etc/postgresql-common; \
	echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf; \
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
	chmod +x /usr/sbin/policy-rc.d; \
	apt-get update; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 tini; \
	rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d; \
	install -d -o postgres -g postgres -m 0755 /var/lib/pgha; \
	install -d -m 0755 /etc/pgha

ENV LANG=C.UTF-8 \
	PGHACTL_CONFIG_FILE=/etc/pgha/node.yml

COPY docker/pgha/healthcheck.sh /usr/local/bin/pgha-healthcheck
COPY docker/pgha/node.yml /etc/pgha/node.yml

USER postgres
WORKDIR /var/lib/pgha
# 5432 Postgres, 6432 pooler (to the primary), 6433 pooler (replicas),
# 8008 REST API (HAProxy's health checks).
EXPOSE 5432 6432 6433 8008
STOPSIGNAL SIGTERM
# GET /liveness on the REST API: 200 while the HA loop runs.
HEALTHCHECK --interval=5s --timeout=3s --start-period=120s --retries=3 CMD ["pgha-healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["pgha", "run", "-c", "/etc/pgha/node.yml"]

# Last, so that a code change rebuilds only this layer.
COPY bin/pgha bin/pghactl /usr/local/bin/
