#!/usr/bin/env bash
# scripts/test-fresh.sh [RELEASE...]: the README's quick start, exactly as
# written, on bare Debian machines (default: bookworm trixie). `make test-fresh`.
#
# Per release: a pristine debootstrap minbase root (scripts/rootfs.sh, cached)
# is unpacked into a new directory; "bare" means that root plus `make`, the
# one thing the README asks a user to install first. The repository's tracked
# files (git ls-files) are copied to /src in it. Then, in a chroot:
#   1. `make run` in the background, until /healthz answers, quotes arrive on
#      `redis-cli SUBSCRIBE quotes:AAPL`, and /dashboard answers 200 with
#      every script it names; then it is stopped as a user would (Ctrl-C)
#      and must leave no process behind;
#   2. `make test`.
# Every run installs from scratch: only the pristine roots and the
# downloaded .deb files are cached ($TICKERD_FRESH_CACHE, default
# /var/cache/tickerd-fresh), never an installed state.
#
# The chroot shares the host's network and loopback: `make run` gets free
# ports (TICKERD_PORT, REDIS_URL) so that it never meets a server of the
# host's; the tests pick free ports themselves. Behind a TLS proxy whose CA
# only the host trusts, npm needs that CA: when NODE_EXTRA_CA_CERTS is set,
# its file is copied into the root and the variable passed on, as a user
# behind such a proxy would set it. Host apt settings for a proxy or an
# archive snapshot (Acquire::*::Proxy, Check-Valid-Until) are copied too, and
# resolv.conf.
#
# Mounts (proc, sys, dev, dev/pts, a fresh dev/shm, the .deb cache) are made
# in a private mount namespace (unshare -m): they are gone when it ends,
# however it ends, and never show on the host. Needs root, debootstrap,
# unshare, chroot, curl and git. Fails, never skips, naming what is missing.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${TICKERD_FRESH_CACHE:-/var/cache/tickerd-fresh}
# Bounds of each phase: a wedged install or server fails the test, never hangs it.
RUN_UP_TIMEOUT_S=${FRESH_RUN_UP_TIMEOUT_S:-1800}   # make run: install + build + start
QUOTES_TIMEOUT_S=20
STOP_TIMEOUT_S=30
TEST_TIMEOUT_S=${FRESH_TEST_TIMEOUT_S:-2700}       # make test: install + every test
ENV_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CA_IN_ROOT=/root/proxy-ca.crt

die() { echo "test-fresh: FAIL: $*" >&2; exit 1; }
now() { date +%s; }
phase_t0=0
phase() { phase_t0=$(now); echo "test-fresh: [$release] $*"; }
phase_done() { echo "test-fresh: [$release] $1: $(($(now) - phase_t0)) s"; }

free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Runs a command in the root as a fresh login would: a clean environment,
# root's home, the proxy CA when the host has one.
in_root() {
  local envs=(PATH=$ENV_PATH HOME=/root LANG=C.UTF-8 TERM=dumb)
  [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && envs+=(NODE_EXTRA_CA_CERTS=$CA_IN_ROOT)
  chroot "$root" /usr/bin/env -i "${envs[@]}" "$@"
}

# One line per test kind of a `make test` log: unit (cmocka), integration
# (pytest), browser (node --test), fuzz (harnesses run).
summarize() {
  local unit integ browser fuzz
  unit=$(awk '/^\[  PASSED  \] [0-9]+ test/ { n += $4; f++ } END { printf "%d tests in %d files passed", n, f }' "$1")
  integ=$(grep -E '^[0-9]+ passed' "$1" | tail -n 1)
  browser=$(awk '/^# pass/ { p = $3 } /^# fail/ { f = $3 } END { printf "%s passed, %s failed", p, f }' "$1")
  fuzz=$(grep -c '^stat::number_of_executed_units' "$1" || true)
  echo "test-fresh: [$release]   unit: $unit; integration: $integ; browser: $browser; fuzz: $fuzz harnesses ran clean"
}

# PIDs of processes whose root directory is this chroot.
root_pids() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && echo "${p#/proc/}"
  done
  return 0
}

# ---- inside the private mount namespace: one release ------------------------
inside() {
  release=$1 root=$2
  run_pid="" # global: the EXIT trap reads it after this function returned
  local t
  cleanup_inside() {
    # Everything left in the root was started by this test: stop it, then
    # unmount (the namespace would drop the mounts anyway).
    local pids
    [ -n "$run_pid" ] && kill -TERM -- "-$run_pid" 2>/dev/null
    pids=$(root_pids)
    if [ -n "$pids" ]; then kill -TERM $pids 2>/dev/null; sleep 1; pids=$(root_pids); [ -z "$pids" ] || kill -KILL $pids 2>/dev/null; fi
    for m in var/cache/apt/archives dev/shm dev/pts dev sys proc; do
      mountpoint -q "$root/$m" && umount -R "$root/$m" 2>/dev/null || umount -lR "$root/$m" 2>/dev/null || true
    done
  }
  trap cleanup_inside EXIT

  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys"; mount --make-rslave "$root/sys"
  mount --bind /dev "$root/dev"
  mount --bind /dev/pts "$root/dev/pts"
  mount -t tmpfs -o mode=1777,size=1g shm "$root/dev/shm"
  mkdir -p "$cache/apt/$release/partial"
  mount --bind "$cache/apt/$release" "$root/var/cache/apt/archives"

  # What a user does first: make, from the release's archive (README).
  phase "bare machine: apt-get install make"
  in_root sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends make' \
    >"$root/tmp/install-make.log" 2>&1 \
    || { tail -n 20 "$root/tmp/install-make.log" >&2; die "[$release] could not install make in the bare root"; }
  phase_done "install make"

  # 1. make run, until it serves quotes and the dashboard.
  local port rport log=$root/tmp/make-run.log
  port=$(free_port); rport=$(free_port)
  phase "make run (TICKERD_PORT=$port, REDIS_URL=redis://127.0.0.1:$rport)"
  setsid chroot "$root" /usr/bin/env -i PATH=$ENV_PATH HOME=/root LANG=C.UTF-8 TERM=dumb \
    ${NODE_EXTRA_CA_CERTS:+NODE_EXTRA_CA_CERTS=$CA_IN_ROOT} \
    TICKERD_PORT=$port REDIS_URL=redis://127.0.0.1:$rport \
    sh -c 'cd /src && exec make run' >"$log" 2>&1 </dev/null &
  run_pid=$!
  t=$(now)
  until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/healthz" 2>/dev/null; do
    if ! kill -0 "$run_pid" 2>/dev/null; then tail -n 40 "$log" >&2; die "[$release] make run exited before /healthz answered (log above)"; fi
    [ $(($(now) - t)) -lt "$RUN_UP_TIMEOUT_S" ] || { tail -n 40 "$log" >&2; die "[$release] /healthz did not answer within ${RUN_UP_TIMEOUT_S} s"; }
    sleep 2
  done
  phase_done "make run until /healthz answers"

  phase "checks: quotes on quotes:AAPL, /dashboard and its scripts"
  local sub
  sub=$(in_root timeout "$QUOTES_TIMEOUT_S" redis-cli -p "$rport" SUBSCRIBE quotes:AAPL | grep -m1 -A2 '^message$' || true)
  echo "$sub" | grep -q '"AAPL"' || { tail -n 20 "$log" >&2; die "[$release] no quote arrived on quotes:AAPL within ${QUOTES_TIMEOUT_S} s (got: ${sub:-nothing})"; }
  echo "test-fresh: [$release] quote: $(echo "$sub" | tail -n 1 | cut -c1-120)"
  local page scripts s
  page=$(curl -fsS --max-time 5 "http://127.0.0.1:$port/dashboard") || die "[$release] /dashboard does not answer 200"
  scripts=$(echo "$page" | grep -o '<script src="[^"]*"' | sed 's/.*src="//; s/"$//')
  [ -n "$scripts" ] || die "[$release] /dashboard names no script"
  # Relative script paths resolve against the page's <base href>, as a browser does.
  local base url
  base=$(echo "$page" | grep -o '<base href="[^"]*"' | sed 's/.*href="//; s/"$//' | head -n 1)
  base=${base:-/dashboard}
  for s in $scripts; do
    case "$s" in /*) url=$s ;; *) url=${base%/}/$s ;; esac
    curl -fsS -o /dev/null --max-time 5 "http://127.0.0.1:$port$url" || die "[$release] the dashboard's script $url does not answer 200"
  done
  echo "test-fresh: [$release] /dashboard 200 with $(echo $scripts)"
  phase_done "checks"

  # Stopped as a user stops it: Ctrl-C, i.e. SIGINT to the foreground group.
  phase "stop make run (SIGINT)"
  kill -INT -- "-$run_pid"
  t=$(now)
  while kill -0 "$run_pid" 2>/dev/null; do
    [ $(($(now) - t)) -lt "$STOP_TIMEOUT_S" ] || die "[$release] make run still running ${STOP_TIMEOUT_S} s after SIGINT"
    sleep 0.5
  done
  run_pid=""
  sleep 1
  local left
  left=$(root_pids)
  [ -z "$left" ] || die "[$release] processes left after make run stopped: $(for p in $left; do tr '\0' ' ' <"/proc/$p/cmdline"; echo; done)"
  phase_done "stop"

  # 2. make test.
  phase "make test"
  in_root timeout "$TEST_TIMEOUT_S" sh -c 'cd /src && make test' >"$root/tmp/make-test.log" 2>&1 \
    || { tail -n 60 "$root/tmp/make-test.log" >&2; die "[$release] make test failed (log above)"; }
  summarize "$root/tmp/make-test.log"
  phase_done "make test"
}

if [ "${1:-}" = "--inside" ]; then
  shift
  inside "$@"
  exit 0
fi

# ---- outside: per release, a new root, then the namespace ---------------------
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts)"
for tool in debootstrap unshare chroot curl git mountpoint setsid /usr/bin/python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (apt-get install debootstrap util-linux curl git python3)"
done
releases=("$@")
[ ${#releases[@]} -gt 0 ] || releases=(bookworm trixie)
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ ! -r "$NODE_EXTRA_CA_CERTS" ]; then
  die "NODE_EXTRA_CA_CERTS names $NODE_EXTRA_CA_CERTS, which cannot be read"
fi

root=""
cleanup() {
  # The mounts lived in the namespace only: nothing here is mounted, and
  # --one-file-system guards against the unexpected anyway.
  if [ -n "$root" ] && [ -d "$root" ] && [ "${TICKERD_FRESH_KEEP:-0}" != 1 ]; then
    rm -rf --one-file-system "$root"
  fi
}
trap cleanup EXIT

total_t0=$(now)
for release in "${releases[@]}"; do
  phase "pristine root (scripts/rootfs.sh, cached in $cache)"
  tarball=$("$here/scripts/rootfs.sh" "$release") || die "[$release] no root filesystem (scripts/rootfs.sh)"
  root=$(mktemp -d "/var/tmp/tickerd-fresh-$release.XXXXXX")
  tar -C "$root" -xf "$tarball"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  # debootstrap writes no /etc/hosts; every installed machine has one (the
  # installer's, an image's), and without it "localhost" may not resolve.
  [ -e "$root/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
  for f in /etc/apt/apt.conf.d/*; do
    [ -f "$f" ] && grep -qiE 'Proxy|Check-Valid-Until|Check-Date' "$f" && cp "$f" "$root/etc/apt/apt.conf.d/"
  done
  [ -z "${NODE_EXTRA_CA_CERTS:-}" ] || cp "$NODE_EXTRA_CA_CERTS" "$root$CA_IN_ROOT"
  mkdir -p "$root/src"
  (cd "$here" && git ls-files -z | tar --null -T - -cf -) | tar -C "$root/src" -xf -
  phase_done "root ready"

  release_t0=$(now)
  unshare --mount --propagation private "$0" --inside "$release" "$root" \
    || die "[$release] the fresh-machine test failed"
  echo "test-fresh: [$release] PASS in $(($(now) - release_t0)) s"
  cleanup
  root=""
done
echo "test-fresh: all PASS (${releases[*]}) in $(($(now) - total_t0)) s"
