#!/bin/sh
# scripts/deps-apt.sh PACKAGE...: install the Debian packages that are missing
# (deps.mk names them; this script is only the mechanism). Quiet when every
# package is present.
#
# Installing must not start services: a redis-server or nginx package would
# otherwise start a daemon that then holds ports 6379 and 80 on the user's
# machine. Debian's mechanism for that is /usr/sbin/policy-rc.d (exit 101:
# "action forbidden"), consulted by invoke-rc.d and deb-systemd-invoke. One is
# installed for the duration of the install only, and removed afterwards only
# if this script created it; an existing one is never touched. Nothing is
# stopped or killed, before or after.
set -u

# Overridable for test/integration/test_deps.py only, which must not touch
# the machine's own file.
POLICY=${DEPS_POLICY_RC_D:-/usr/sbin/policy-rc.d}
MARK="# tickerd scripts/deps-apt.sh: no service starts during make deps"

missing=""
for p in "$@"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' \
		|| missing="$missing $p"
done
[ -n "$missing" ] || exit 0

echo "deps: installing$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null 2>&1 || {
		echo "deps: not root and no sudo: cannot install$missing" >&2
		exit 1
	}
	SUDO=sudo
fi

policy_ours=0
remove_policy() {
	# Only our own file, recognised by its marker line: if something replaced
	# it meanwhile, that is not ours to remove.
	if [ "$policy_ours" = 1 ] && grep -qxF "$MARK" "$POLICY" 2>/dev/null; then
		$SUDO rm -f "$POLICY"
	fi
	policy_ours=0
}
trap remove_policy EXIT
trap 'exit 130' INT TERM HUP
# A file with our marker was left by an install that was killed: ours to remove.
grep -qxF "$MARK" "$POLICY" 2>/dev/null && policy_ours=1
if [ ! -e "$POLICY" ] && [ ! -L "$POLICY" ]; then
	# Written aside, then moved with -n: a policy-rc.d that appeared meanwhile
	# is kept, and then it is not ours.
	tmp="$POLICY.tickerd.$$"
	printf '#!/bin/sh\n%s\nexit 101\n' "$MARK" | $SUDO tee "$tmp" >/dev/null \
		&& $SUDO chmod 0755 "$tmp" && $SUDO mv -n "$tmp" "$POLICY" \
		&& grep -qxF "$MARK" "$POLICY" && policy_ours=1
	$SUDO rm -f "$tmp"
fi

log=$(mktemp "${TMPDIR:-/tmp}/tickerd-deps.XXXXXX")
ok=1
$SUDO apt-get update -qq >"$log" 2>&1 || ok=0
if [ "$ok" = 1 ]; then
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing \
		>>"$log" 2>&1 || ok=0
fi
remove_policy
if [ "$ok" = 1 ]; then
	rm -f "$log"
	exit 0
fi

# Name what could not be installed: a package this release's archive does not
# have, else the packages of the failed install with apt's own last words.
tail -n 20 "$log" >&2
rm -f "$log"
unknown=""
for p in $missing; do
	cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ { print $2 }')
	[ -n "$cand" ] && [ "$cand" != "(none)" ] || unknown="$unknown $p"
done
if [ -n "$unknown" ]; then
	echo "deps: cannot install$unknown: not in this release's package archive (see deps.mk)" >&2
else
	echo "deps: apt-get could not install:$missing (apt's output above)" >&2
fi
exit 1
