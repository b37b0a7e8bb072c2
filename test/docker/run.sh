#!/usr/bin/env bash
# make test-docker: the image built and the compose stack run on a real Docker
# engine, checked from the host through 127.0.0.1 only.
#
#  1. An engine: the one that answers `docker info`, else dockerd with the vfs
#     storage driver, started here (docker.io installed first when there is no
#     dockerd) and stopped at the end.
#  2. The images the files name (FROM lines, the compose file's Redis image):
#     present, else pulled, else made offline: the Debian bases imported from a
#     debootstrap root (scripts/rootfs.sh), Redis built from Debian's
#     redis-server (test/docker/redis-standin/) and tagged as the compose image.
#  3. `compose build` with the host's CA bundle passed as EXTRA_CA_CERTS.
#  4. `compose up` with no .env, then with a .env and a key from the
#     environment; health, readiness, dashboard, quotes in the Redis container,
#     Redis stopped and started, non-root, secrets only at run time, a clean
#     stop within the grace period.
#  5. The fleet (docker/docker-compose.fleet.yml): three tickerd, nginx as the
#     load balancer, Redis. All three healthy behind the LB, exactly one lease
#     holder, quotes in the Redis container; `docker kill` (SIGKILL) of the
#     holder: another takes over within the lease TTL, quotes keep arriving,
#     and no instance published while another held the lease (/status); a
#     WebSocket and an SSE client of the holder reconnect through the LB and
#     resume from their last positions, recovered and gapless
#     (test/docker/fleet_resume.py).
# Whatever happens, the stack is taken down. Anything missing is a failure
# that names it, never a skip.
set -euo pipefail
cd "$(dirname "$0")/../.."

ENGINE_START_S=60      # dockerd answering `docker info`
PULL_TIMEOUT_S=60      # one `docker pull`; no registry may answer at all
HTTP_WAIT_S=120        # tickerd answering after `up` (Redis health check first)
STATE_WAIT_S=30        # /readyz following a Redis stop or start
SUBSCRIBE_S=5          # redis-cli SUBSCRIBE listening for quotes
STOP_GRACE_S=10        # stop_grace_period of the compose file
FLEET_LEASE_TTL_S=5    # TICKERD_LEASE_TTL_MS of the fleet file (its default)
# A takeover is due within the TTL after the kill; this much more covers the
# new holder's round and a loaded machine.
TAKEOVER_SLACK_S=2
FLEET_TASK_PHASES_MS=200,200

ENGINE_PACKAGES=${DOCKER_ENGINE_PACKAGES:-docker.io}
COMPOSE_FILE=docker/docker-compose.yml
FLEET_FILE=docker/docker-compose.fleet.yml
LB_CONTEXT=docker/lb
DOCKERFILE=docker/Dockerfile
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
SECRET_VALUE="test-docker-key-$$"

logdir=build/test-docker
mkdir -p "$logdir"
work=$(mktemp -d /tmp/tickerd-test-docker.XXXXXX)
project="tickerd-test-$$"
image="tickerd:test-docker"
lb_image="tickerd-lb:test-docker"
# Inside the build context, git-ignored; a fixed name, so that an unchanged
# tree rebuilds from the layer cache.
ca_file="docker/extra-ca.test-docker.crt"
t_start=$SECONDS
dockerd_pid=""
stack_up=0
fleet_up=0
DOCKER=""
COMPOSE=()

say() { printf '== [%4ds] %s\n' $((SECONDS - t_start)) "$*"; }
fail() { echo "test-docker: FAIL: $*" >&2; exit 1; }

# The stack runs from a copy of the compose file in $work/docker, so that the
# test decides whether a .env sits beside it (a user's docker/.env is never
# read or touched). The image is built beforehand, from the repository.
compose() { "${COMPOSE[@]}" -p "$project" -f "$work/docker/docker-compose.yml" "$@"; }
fleet() { "${COMPOSE[@]}" -p "$project-fleet" -f "$work/docker/docker-compose.fleet.yml" "$@"; }

# take_down STACK LOG: its logs when the test failed, then compose down.
take_down() {
  if [ "$rc" != 0 ]; then
    echo "---- $1: compose ps / logs (last 40 lines each)"
    "$1" ps
    "$1" logs --no-color --tail 40
  fi
  "$1" down --volumes --remove-orphans >"$logdir/$2" 2>&1 \
    || { echo "test-docker: $1 down failed:"; cat "$logdir/$2"; rc=1; }
}

cleanup() {
  local rc=$?
  set +e
  [ "$stack_up" = 1 ] && take_down compose down.log
  [ "$fleet_up" = 1 ] && take_down fleet fleet-down.log
  rm -f "$ca_file"
  rm -rf "$work"
  if [ -n "$dockerd_pid" ]; then
    say "stopping the dockerd this test started (pid $dockerd_pid)"
    kill -TERM "$dockerd_pid" 2>/dev/null
    for _ in $(seq 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$dockerd_pid" 2>/dev/null && { echo "test-docker: dockerd did not stop"; rc=1; }
  fi
  if [ "$rc" = 0 ]; then say "test-docker: PASS"; else say "test-docker: FAILED (logs in $logdir)"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 1. the engine ------------------------------------------------------------

# The first client that talks to the engine: the one on the PATH, or Debian's
# (whose API version matches the docker.io engine this test may start).
find_client() {
  local c
  for c in $(command -v docker) /usr/bin/docker; do
    if [ -x "$c" ] && "$c" info >/dev/null 2>&1; then DOCKER=$c; return 0; fi
  done
  return 1
}

start_engine() {
  if ! command -v dockerd >/dev/null 2>&1; then
    say "no Docker engine: installing $ENGINE_PACKAGES"
    make --no-print-directory deps-apt APT_PACKAGES="$ENGINE_PACKAGES" \
      || fail "could not install $ENGINE_PACKAGES (the Docker engine)"
    command -v dockerd >/dev/null 2>&1 || fail "$ENGINE_PACKAGES installed no dockerd"
    # The package's scripts may have started one.
    find_client && return 0
  fi
  say "starting dockerd --storage-driver=vfs (log: $logdir/dockerd.log)"
  dockerd --storage-driver=vfs >"$logdir/dockerd.log" 2>&1 &
  dockerd_pid=$!
  local deadline=$((SECONDS + ENGINE_START_S))
  until find_client; do
    kill -0 "$dockerd_pid" 2>/dev/null || { dockerd_pid=""; tail -n 20 "$logdir/dockerd.log" >&2;
                                             fail "dockerd exited at start (log above)"; }
    [ $SECONDS -lt $deadline ] || { tail -n 20 "$logdir/dockerd.log" >&2;
                                    fail "dockerd did not answer within ${ENGINE_START_S}s"; }
    sleep 1
  done
}

find_client || start_engine
say "engine: $("$DOCKER" version -f 'server {{.Server.Version}}, client {{.Client.Version}}') ($DOCKER)"

if "$DOCKER" compose version >/dev/null 2>&1; then
  COMPOSE=("$DOCKER" compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  fail "no docker compose: neither '$DOCKER compose' nor docker-compose (package docker-compose)"
fi
command -v curl >/dev/null 2>&1 || fail "curl is missing (package curl)"
say "compose: $("${COMPOSE[@]}" version --short 2>/dev/null || echo "${COMPOSE[*]}")"

# Values a user may have exported must not leak into the no-.env run: unset
# every variable the compose file interpolates.
for v in $(cat "$COMPOSE_FILE" "$FLEET_FILE" | grep -v '^ *#' | grep -o '\${[A-Z_][A-Z0-9_]*' | cut -c3- | sort -u); do
  unset "$v"
done

# ---- 2. the images the files name ----------------------------------------------

registry=unknown   # after the first pull: yes or no; no one waits twice for it
pull() {
  [ "$registry" = no ] && return 1
  if timeout "$PULL_TIMEOUT_S" "$DOCKER" pull "$1" >>"$logdir/pull.log" 2>&1; then
    registry=yes; return 0
  fi
  registry=no; return 1
}

have_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

# debian:RELEASE or debian:RELEASE-slim, from a debootstrap --variant=minbase root.
provide_base() {
  local img=$1 release tar
  have_image "$img" && { say "image $img: present"; return 0; }
  pull "$img" && { say "image $img: pulled"; return 0; }
  case "$img" in
    debian:*) release=${img#debian:}; release=${release%-slim} ;;
    *) fail "image $img: not present, no registry answered, and only debian:* bases can be made offline" ;;
  esac
  say "image $img: no registry answered; importing a debootstrap $release root"
  tar=$(scripts/rootfs.sh "$release") || fail "image $img: scripts/rootfs.sh $release failed"
  "$DOCKER" import --change 'CMD ["bash"]' "$tar" "$img" >/dev/null \
    || fail "image $img: docker import of $tar failed"
}

provide_redis() {
  local img=$1
  have_image "$img" && { say "image $img: present"; return 0; }
  pull "$img" && { say "image $img: pulled"; return 0; }
  say "image $img: no registry answered; building Debian's redis-server as $img"
  "$DOCKER" build -t "$img" test/docker/redis-standin >"$logdir/redis-standin.log" 2>&1 \
    || { tail -n 30 "$logdir/redis-standin.log" >&2; fail "image $img: the stand-in did not build"; }
}

# The Dockerfile's bases, and the stand-in Redis image's.
for img in $( { awk 'toupper($1) == "FROM" { print $2 }' "$DOCKERFILE" "$LB_CONTEXT/Dockerfile";
                echo debian:bookworm-slim; } | sort -u); do
  provide_base "$img"
done
redis_image=$(awk '$1 == "image:" && $2 ~ /^redis/ { print $2; exit }' "$COMPOSE_FILE")
[ -n "$redis_image" ] || fail "no redis image named in $COMPOSE_FILE"
provide_redis "$redis_image"

# ---- 3. the build --------------------------------------------------------------

# The host's CA bundle (and NODE_EXTRA_CA_CERTS, which npm on this host trusts)
# into a file of the build context, named by the build argument.
: >"$ca_file"
for f in "$HOST_CA_BUNDLE" ${NODE_EXTRA_CA_CERTS:+"$NODE_EXTRA_CA_CERTS"}; do
  [ -r "$f" ] && cat "$f" >>"$ca_file"
done
[ -s "$ca_file" ] || fail "no CA bundle at $HOST_CA_BUNDLE to pass to the build"
: >"$work/empty.env"
mkdir -p "$work/docker"
cp "$COMPOSE_FILE" "$work/docker/docker-compose.yml"
cp "$FLEET_FILE" "$work/docker/docker-compose.fleet.yml"
cp -r "$LB_CONTEXT" "$work/docker/lb"   # compose checks the build path even with --no-build
export TICKERD_IMAGE=$image TICKERD_LB_IMAGE=$lb_image

say "building $image (log: $logdir/build.log)"
t0=$SECONDS
# Each line of the log prefixed with the seconds since the build started.
TICKERD_EXTRA_CA_CERTS=$ca_file "${COMPOSE[@]}" --env-file "$work/empty.env" -p "$project" \
  -f "$COMPOSE_FILE" build tickerd 2>&1 \
  | while IFS= read -r line; do printf '[%4ds] %s\n' $((SECONDS - t0)) "$line"; done >"$logdir/build.log" \
  || { tail -n 40 "$logdir/build.log" >&2; fail "the image did not build (log above)"; }
size_mb=$(( $("$DOCKER" image inspect -f '{{.Size}}' "$image") / 1000000 ))
say "built $image in $((SECONDS - t0))s: $size_mb MB"

# The extra CAs stayed in the build stage: no trace in the runtime image.
"$DOCKER" history --no-trunc "$image" | grep -q EXTRA_CA && fail "the runtime image's history names EXTRA_CA_CERTS"
ca_sum=$(sha256sum "$ca_file" | cut -d' ' -f1)
# As root in a throwaway container, to read every file.
listing=$("$DOCKER" run --rm --user 0 --entrypoint sh "$image" -c \
  "test ! -e /src || echo /src; find / -xdev -type f -size $(stat -c %s "$ca_file")c -exec sha256sum {} +") \
  || fail "could not list the runtime image's files"
copies=$(echo "$listing" | awk -v s="$ca_sum" '$1 == "/src" || $1 == s')
[ -z "$copies" ] || fail "the build's CA file or sources are in the runtime image: $copies"
"$DOCKER" image inspect -f '{{json .Config.Env}}' "$image" | grep -q APCA_ \
  && fail "the image carries an APCA_ variable"

say "building $lb_image (log: $logdir/build-lb.log)"
"$DOCKER" build -t "$lb_image" "$LB_CONTEXT" >"$logdir/build-lb.log" 2>&1 \
  || { tail -n 30 "$logdir/build-lb.log" >&2; fail "the load balancer image did not build (log above)"; }

# ---- 4. the stack --------------------------------------------------------------

port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export TICKERD_PUBLISH_PORT=$port
base="http://127.0.0.1:$port"

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$base$1" || true; }
expect_code() {  # PATH CODE
  local got; got=$(http_code "$1")
  [ "$got" = "$2" ] || fail "GET $1 answered $got, expected $2"
}
wait_code() {  # PATH CODE SECONDS
  local deadline=$((SECONDS + $3)) got
  while got=$(http_code "$1"); [ "$got" != "$2" ]; do
    [ $SECONDS -lt $deadline ] || fail "GET $1 still answers $got after $3s, expected $2"
    sleep 1
  done
}

# Quotes on quotes:SYM as redis-cli inside the Redis container sees them: the
# third line of a pushed message is its payload, a JSON quote naming SYM.
expect_quotes() {  # SYM [STACK]: STACK is compose (default) or fleet
  local out stack=${2:-compose}
  out=$("$stack" exec -T redis timeout "$SUBSCRIBE_S" redis-cli SUBSCRIBE "quotes:$1" 2>&1 || true)
  echo "$out" | awk -v ch="quotes:$1" -v sym="\"$1\"" '
    prev2 == "message" && prev1 == ch && index($0, sym) { n++ }
    { prev2 = prev1; prev1 = $0 } END { exit n > 0 ? 0 : 1 }' \
    || fail "no quote on quotes:$1 within ${SUBSCRIBE_S}s; redis-cli said: $(echo "$out" | head -c 600)"
}

up() {  # as a user would: compose up, detached
  stack_up=1
  compose up -d --no-build >>"$logdir/up.log" 2>&1 \
    || { tail -n 30 "$logdir/up.log" >&2; fail "compose up failed (log above)"; }
  wait_code /healthz 200 "$HTTP_WAIT_S"
}

say "up, no .env (port $port on 127.0.0.1)"
[ ! -e "$work/docker/.env" ] || fail "a .env beside the compose copy"
up
wait_code /readyz 200 "$STATE_WAIT_S"
expect_code /dashboard 200
expect_code /dashboard/app.js 200
expect_code /dashboard/vendor/uPlot.iife.min.js 200
expect_quotes AAPL
curl -s --max-time 5 "$base/quotes" | grep -q '"IBM"' && fail "IBM quoted without a .env naming it"
uid=$(compose exec -T tickerd id -u | tr -d '\r')
[ -n "$uid" ] && [ "$uid" != 0 ] || fail "the tickerd process runs as uid '$uid'"
say "healthz, readyz, dashboard 200; quotes:AAPL flowing; uid $uid"

say "redis stopped"
compose stop redis >>"$logdir/up.log" 2>&1 || fail "compose stop redis failed"
wait_code /readyz 503 "$STATE_WAIT_S"
expect_code /healthz 200
expect_code /quotes 200
say "redis started"
compose start redis >>"$logdir/up.log" 2>&1 || fail "compose start redis failed"
wait_code /readyz 200 "$STATE_WAIT_S"
expect_quotes AAPL

# A .env beside the compose file, and a secret from the environment only.
say "up again with a .env (TICKERD_SYMBOLS=AAPL,IBM) and APCA_API_KEY_ID from the environment"
printf 'TICKERD_SYMBOLS=AAPL,IBM\nTICKERD_LOG_LEVEL=debug\n' >"$work/docker/.env"
APCA_API_KEY_ID=$SECRET_VALUE up
wait_code /readyz 200 "$STATE_WAIT_S"
expect_quotes IBM
curl -s --max-time 5 "$base/quotes" | grep -q '"IBM"' || fail "GET /quotes has no IBM with the .env naming it"
[ "$(compose exec -T tickerd printenv APCA_API_KEY_ID | tr -d '\r')" = "$SECRET_VALUE" ] \
  || fail "APCA_API_KEY_ID from the environment did not reach the container"

say "stop tickerd"
cid=$(compose ps -q tickerd)
t0=$SECONDS
compose stop tickerd >>"$logdir/up.log" 2>&1 || fail "compose stop tickerd failed"
code=$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$cid")
# SIGKILL after the grace period would be 137: 0 means it stopped by itself.
[ "$code" = 0 ] || fail "tickerd exited $code on stop (grace period ${STOP_GRACE_S}s)"
compose logs --no-color tickerd >"$logdir/tickerd.log" 2>&1
grep -q server_stopped "$logdir/tickerd.log" || fail "no server_stopped in compose logs"
grep -qF "$SECRET_VALUE" "$logdir/tickerd.log" && fail "the Alpaca key appears in the logs"
say "stopped with exit code 0 in $((SECONDS - t0))s; server_stopped logged; image $image $size_mb MB"

# ---- 5. the fleet --------------------------------------------------------------

say "single stack down; the fleet: three tickerd, nginx, Redis"
compose down --volumes --remove-orphans >"$logdir/down.log" 2>&1 || fail "compose down failed"
stack_up=0
rm -f "$work/docker/.env"
port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export TICKERD_PUBLISH_PORT=$port
base="http://127.0.0.1:$port"
# Short tasks, so that one finishes while we watch (the default is 8 s).
export TICKERD_TASK_PHASES_MS=$FLEET_TASK_PHASES_MS
fleet_up=1
fleet up -d --no-build >"$logdir/fleet-up.log" 2>&1 \
  || { tail -n 30 "$logdir/fleet-up.log" >&2; fail "fleet up failed (log above)"; }
wait_code /healthz 200 "$HTTP_WAIT_S"

# One line per running instance: "<service> <container> <instance_id> <role>
# <quotes.upstream> <lease.takeovers>", from its own /status (inside its
# container: the instances are not published on the host).
fleet_roles() {
  local svc cid st
  for svc in tickerd1 tickerd2 tickerd3; do
    cid=${fleet_cid[$svc]}
    [ "$("$DOCKER" inspect -f '{{.State.Running}}' "$cid" 2>/dev/null)" = true ] || continue
    st=$("$DOCKER" exec "$cid" curl -fsS --max-time 3 http://127.0.0.1:8000/status 2>/dev/null) || continue
    echo "$st" | /usr/bin/python3 -c '
import json, sys
s = json.load(sys.stdin)
print(sys.argv[1], sys.argv[2], s["instance_id"], s["role"], s["quotes"]["upstream"], s["lease"]["takeovers"])' "$svc" "$cid"
  done
}
holders() { awk '$4 == "holder"' <<<"$1"; }

declare -A fleet_cid
for svc in tickerd1 tickerd2 tickerd3; do fleet_cid[$svc]=$(fleet ps -q "$svc"); done
deadline=$((SECONDS + STATE_WAIT_S))
while roles=$(fleet_roles); [ "$(wc -l <<<"$roles")" != 3 ] || [ "$(holders "$roles" | wc -l)" != 1 ]; do
  [ $SECONDS -lt $deadline ] || fail "no single lease holder among three within ${STATE_WAIT_S}s: $roles"
  sleep 1
done
echo "$roles" >"$logdir/fleet-roles.txt"
read -r holder_svc holder_cid holder_id _ _ _ <<<"$(holders "$roles")"
# The standbys never ran the feed: they published no upstream quote.
awk '$4 != "holder" && $5 != 0 { exit 1 }' <<<"$roles" \
  || fail "a standby published upstream quotes: $roles"

# Round robin through the LB reaches all three.
ids=$(for _ in $(seq 9); do curl -fsS --max-time 5 "$base/status"; echo; done \
  | /usr/bin/python3 -c 'import json, sys; print(len({json.loads(l)["instance_id"] for l in sys.stdin if l.strip()}))')
[ "$ids" = 3 ] || fail "9 requests through the LB reached $ids instance(s), not 3"
expect_quotes AAPL fleet
say "fleet: 3 instances behind the LB, one holder ($holder_svc, $holder_id), quotes:AAPL flowing"

# A task created through the LB, once finished, is answered through it by
# every instance (the others from its record in Redis): nine lookups in a
# row, round robin over the three, all 200 with the same final state. The
# task's outcome is its own (--task-error-rate fails one in ten by default),
# so the first final answer sets what the other eight must say.
tid=$(curl -fsS --max-time 5 "$base/hello" | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["task_id"])') \
  || fail "GET /hello through the LB gave no task id"
task_state() {  # the state one lookup answers, or nothing (404 while it runs elsewhere)
  curl -fs --max-time 5 "$base/tasks/$tid" | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["state"])' 2>/dev/null
}
task_final=
task_everywhere() {
  local i st
  for i in $(seq 9); do
    st=$(task_state) || return 1
    case $st in completed|failed) ;; *) return 1 ;; esac
    [ -n "$task_final" ] || task_final=$st
    [ "$st" = "$task_final" ] || fail "task $tid answered $st by one instance and $task_final by another"
  done
}
deadline=$((SECONDS + STATE_WAIT_S))
until task_everywhere; do
  [ $SECONDS -lt $deadline ] || fail "task $tid not answered finished by every instance within ${STATE_WAIT_S}s"
  sleep 1
done
say "fleet: task $tid answered $task_final by all three through the LB"

# fleet_resume.py kills the holder with a WebSocket and an SSE client on it,
# and checks that both resume through the LB; it prints the kill time.
say "docker kill (SIGKILL) the holder $holder_svc, a WebSocket and an SSE client on it"
resumed=$(/usr/bin/python3 test/docker/fleet_resume.py "$DOCKER" "$port" "$holder_cid" "$holder_id" \
          2>"$logdir/fleet-resume.log") \
  || { echo "$resumed" >&2; cat "$logdir/fleet-resume.log" >&2;
       fail "the clients of the killed holder did not resume through the LB (above)"; }
killed_at=$(head -n 1 <<<"$resumed")
before=$roles
# Polling (docker exec into each) only observes; the time is measured below.
deadline=$((SECONDS + STATE_WAIT_S))
until roles=$(fleet_roles); new=$(holders "$roles"); [ -n "$new" ] && ! grep -q " $holder_id " <<<"$new"; do
  [ $SECONDS -lt $deadline ] || fail "no new holder within ${STATE_WAIT_S}s of killing the holder: $roles"
  sleep 0.5
done
echo "$roles" >>"$logdir/fleet-roles.txt"
[ "$(wc -l <<<"$new")" = 1 ] || fail "two holders after the takeover: $new"
read -r new_svc new_cid new_id _ new_upstream new_takeovers <<<"$new"
# The takeover time: from the kill to the new holder's lease_acquired log
# line (its own clock, the host's: containers share it).
took=$("$DOCKER" logs "$new_cid" 2>&1 | grep '"event":"lease_acquired"' | tail -n 1 | /usr/bin/python3 -c '
import datetime, json, sys
ts = json.loads(sys.stdin.read())["ts"]
t = datetime.datetime.strptime(ts[:26].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc)
print("%.2f" % (t.timestamp() - float(sys.argv[1])))' "$killed_at") || fail "no lease_acquired logged by $new_svc"
awk -v t="$took" -v max=$((FLEET_LEASE_TTL_S + TAKEOVER_SLACK_S)) 'BEGIN { exit !(t > 0 && t <= max) }' \
  || fail "$new_svc took the lease ${took}s after the kill, not within $((FLEET_LEASE_TTL_S + TAKEOVER_SLACK_S))s"
# The new holder published nothing before the kill (its count was 0 then,
# checked above), so no two instances published upstream quotes at once;
# and it counts the change as a takeover.
# (A container Docker restarted would be a new instance id, absent before.)
awk -v id="$new_id" '$3 == id && $5 != 0 { exit 1 }' <<<"$before" \
  || fail "$new_svc had published before the kill: $before"
[ "$new_takeovers" -ge 1 ] || fail "$new_svc became holder without counting a takeover: $new"
awk -v h="$new_svc" '$1 != h && ($4 == "holder" || $5 != 0) { exit 1 }' <<<"$roles" \
  || fail "another instance than $new_svc holds the lease or published: $roles"
expect_quotes AAPL fleet
for _ in $(seq 6); do expect_code /healthz 200; done
say "fleet: $new_svc ($new_id) took the lease ${took}s after the kill (TTL ${FLEET_LEASE_TTL_S}s), quotes:AAPL flowing, LB answers"
say "fleet: its clients resumed through the LB: $(tail -n 1 <<<"$resumed")"
fleet logs --no-color >"$logdir/fleet.log" 2>&1
