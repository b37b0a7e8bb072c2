#!/usr/bin/env bash
# scripts/rootfs.sh RELEASE: print the path of a pristine Debian root
# filesystem tarball (debootstrap --variant=minbase), building it on first use.
#
# The tarball is cached outside the repository, in $TICKERD_FRESH_CACHE
# (default /var/cache/tickerd-fresh), as rootfs/RELEASE-minbase.tar. It holds
# only what debootstrap installed: never an installed state of ours. Other
# tests reuse it (make test-fresh unpacks it into a chroot; a Docker test may
# `docker import` it as a base image).
#
# The mirror is the host's own (the first URI of /etc/apt/sources.list.d/
# debian.sources or /etc/apt/sources.list), since that is the archive this
# machine is known to reach. Progress goes to stderr; stdout is the path only.
set -euo pipefail

release=${1:-}
case "$release" in
  bookworm|trixie) ;;
  *) echo "usage: $0 bookworm|trixie" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "rootfs: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null 2>&1 || {
  echo "rootfs: debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }

cache=${TICKERD_FRESH_CACHE:-/var/cache/tickerd-fresh}
out=$cache/rootfs/$release-minbase.tar
mkdir -p "$cache/rootfs"

host_mirror() {
  local uri=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' /etc/apt/sources.list)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# One builder at a time per release: a second caller waits, then finds it.
exec 9>"$out.lock"
flock 9
if [ ! -s "$out" ]; then
  mirror=$(host_mirror)
  work=$(mktemp -d "$cache/rootfs/$release.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  echo "rootfs: debootstrap --variant=minbase $release from $mirror" >&2
  if ! debootstrap --variant=minbase "$release" "$work/root" "$mirror" >"$work/log" 2>&1; then
    tail -n 30 "$work/log" >&2
    echo "rootfs: debootstrap $release failed (log above)" >&2
    exit 1
  fi
  # debootstrap leaves the .debs it installed in the root's apt cache.
  rm -f "$work/root/var/cache/apt/archives/"*.deb
  tar --numeric-owner -C "$work/root" -cf "$work/root.tar" .
  mv -f "$work/root.tar" "$out"
fi
echo "$out"
