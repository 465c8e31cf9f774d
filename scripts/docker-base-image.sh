#!/usr/bin/env bash
# docker-base-image.sh — make sure the Docker image debian:bookworm-slim
# exists, building it from Debian's package archive when it does not.
#
# The images of docker-compose.yml (Dockerfile, docker/etcd, docker/haproxy)
# start FROM debian:bookworm-slim, as any Dockerfile would. A machine that
# can pull from a container registry has it after `docker pull
# debian:bookworm-slim` (and then this script does nothing). A machine with
# no registry, only Debian's archive, gets an equivalent image here:
#
#   debootstrap --variant=minbase bookworm ROOT MIRROR
#   (slimmed like the official image: no docs, man pages or locales; apt
#    cleans its caches after every install)
#   tar -C ROOT -c . | docker import - debian:bookworm-slim
#
# Usage: scripts/docker-base-image.sh            (needs root, debootstrap)
# Env:   BASE_IMAGE    tag to check and create (default debian:bookworm-slim)
#        DEBIAN_MIRROR archive to bootstrap from (default http://deb.debian.org/debian)
#        REBUILD=1     build and re-tag even when the image exists
set -euo pipefail

IMAGE=${BASE_IMAGE:-debian:bookworm-slim}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

say() { echo "docker-base-image: $*" >&2; }

if [ "${REBUILD:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
	say "$IMAGE is present"
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	say "$IMAGE is missing and building it with debootstrap needs root: run this script as root, or 'docker pull $IMAGE' where a registry is reachable"
	exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
	say "debootstrap is missing: run scripts/install-deps.sh (or apt-get install debootstrap)"
	exit 1
fi

WORK=$(mktemp -d /tmp/pgha-base-image.XXXXXX)
ROOT=$WORK/rootfs
cleanup() {
	# debootstrap may leave /proc or /sys mounted inside the tree on failure.
	for m in "$ROOT/proc" "$ROOT/sys" "$ROOT/dev/pts"; do
		mountpoint -q "$m" 2>/dev/null && umount -l "$m" || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT

start=$(date +%s)
say "building $IMAGE: debootstrap --variant=minbase $SUITE from $MIRROR (a minute or two)"
fail() {
	tail -n 30 "$WORK/debootstrap.log" >&2
	[ -f "$ROOT/debootstrap/debootstrap.log" ] && tail -n 30 "$ROOT/debootstrap/debootstrap.log" >&2
	say "debootstrap failed"
	exit 1
}
# Two stages, so that dpkg skips its fsync calls (force-unsafe-io) while it
# installs the base system: a third less time, and nothing lost, since the
# tree is imported only once complete. The setting stays in the image, as
# in Docker's own images for years: package installs during image builds
# are faster, and the build's commit of the layer makes them durable.
debootstrap --foreign --variant=minbase --merged-usr "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || fail
mkdir -p "$ROOT/etc/dpkg/dpkg.cfg.d"
echo force-unsafe-io >"$ROOT/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
chroot "$ROOT" /debootstrap/debootstrap --second-stage >>"$WORK/debootstrap.log" 2>&1 || fail
t_boot=$(date +%s)

# What the official slim image sets up: keep docs, man pages and
# translations out of every later install, and let apt clean its caches.
mkdir -p "$ROOT/etc/dpkg/dpkg.cfg.d" "$ROOT/etc/apt/apt.conf.d"
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# Slim image: no documentation, manuals or translations (copyrights kept).
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
cat >"$ROOT/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
cat >"$ROOT/etc/apt/apt.conf.d/docker-no-languages" <<'EOF'
Acquire::Languages "none";
EOF
cat >"$ROOT/etc/apt/apt.conf.d/docker-gzip-indexes" <<'EOF'
Acquire::GzipIndexes "true";
EOF
# The same three suites as the official image, so that an image built on
# it installs current (security-fixed) packages.
rm -f "$ROOT/etc/apt/sources.list"
mkdir -p "$ROOT/etc/apt/sources.list.d"
cat >"$ROOT/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

# Bring the packages up to date with the security and updates suites, as
# the official image is when it is published.
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
mount -t proc proc "$ROOT/proc"
if ! chroot "$ROOT" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -qq' >"$WORK/upgrade.log" 2>&1; then
	tail -n 30 "$WORK/upgrade.log" >&2
	say "apt-get upgrade inside the new root file system failed"
	exit 1
fi
umount "$ROOT/proc"
t_upgrade=$(date +%s)

# Drop what the excludes would have kept out, caches, logs and the
# machine's identity (Docker provides /dev, /proc, /sys, hostname and
# resolv.conf at run time).
find "$ROOT/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$ROOT"/usr/share/{man,groff,info,lintian,linda}/* "$ROOT"/debootstrap
find "$ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/lib/apt/lists/*
find "$ROOT/var/log" -type f -delete
rm -rf "$ROOT"/dev/* "$ROOT"/proc/* "$ROOT"/sys/* "$ROOT"/tmp/* "$ROOT"/run/*
rm -f "$ROOT/etc/hostname" "$ROOT/etc/resolv.conf"
: >"$ROOT/etc/machine-id"

size=$(du -sm "$ROOT" | cut -f1)
say "importing ${size} MB root file system as $IMAGE"
tar -C "$ROOT" --numeric-owner -c . | docker import \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'CMD ["bash"]' \
	--message "debootstrap --variant=minbase $SUITE $MIRROR (scripts/docker-base-image.sh)" \
	- "$IMAGE" >/dev/null
end=$(date +%s)
say "$IMAGE built in $((end - start)) s (debootstrap $((t_boot - start)) s, upgrade $((t_upgrade - t_boot)) s, slim and import $((end - t_upgrade)) s)"
