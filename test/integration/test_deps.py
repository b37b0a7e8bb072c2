"""make deps-apt (scripts/deps-apt.sh), with apt-get, apt-cache and sudo
replaced by recording stand-ins on the PATH: nothing is installed and the
machine's own /usr/sbin/policy-rc.d is never touched (DEPS_POLICY_RC_D points
the script at a file of the test's own).

  * while apt-get installs, a policy-rc.d that forbids service starts
    (exit 101) is in place; afterwards it is gone, if the script made it;
  * a policy-rc.d that was there before is neither replaced nor removed;
  * a failed install names the package, whatever apt said;
  * an install stops nothing: a redis-server running before it (as a user's
    own would) still answers after it (the old Makefile ran
    `pkill -x redis-server; pkill -x nginx` after every install)."""
import os
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import RedisServer

ROOT = Path(__file__).resolve().parents[2]
MAKE_TIMEOUT_S = 60
SIGNAL_GRACE_S = 1
# Packages no Debian release has: dpkg-query reports them missing.
FAKE_PKG = "tickerd-test-no-such-package"

APT_GET = """#!/bin/sh
# Records the policy-rc.d seen at install time; fails when told to.
if [ "$1" = update ]; then exit 0; fi
policy="$DEPS_POLICY_RC_D"
if [ -x "$policy" ]; then
  "$policy" redis-server start; echo "policy-exit $?" >> "$STUB_LOG"
  cat "$policy" >> "$STUB_LOG"
else
  echo "policy-absent" >> "$STUB_LOG"
fi
echo "install $*" >> "$STUB_LOG"
[ -z "$STUB_FAIL" ] || { echo "E: Unable to locate package $STUB_FAIL" >&2; exit 100; }
exit 0
"""
APT_CACHE = """#!/bin/sh
# apt-cache policy PKG: no candidate for the package the test says is unknown.
[ "$3" = "$STUB_FAIL" ] || [ "$2" = "$STUB_FAIL" ] && { printf '%s:\\n  Installed: (none)\\n  Candidate: (none)\\n' "$2"; exit 0; }
printf '%s:\\n  Installed: (none)\\n  Candidate: 1.0\\n' "$2"
"""
SUDO = """#!/bin/sh
exec "$@"
"""


@pytest.fixture
def stubs():
    d = Path(tempfile.mkdtemp(prefix="tickerd-deps-"))
    bindir = d / "bin"
    bindir.mkdir()
    for name, text in (("apt-get", APT_GET), ("apt-cache", APT_CACHE), ("sudo", SUDO)):
        f = bindir / name
        f.write_text(text)
        f.chmod(f.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    yield d
    subprocess.run(["rm", "-rf", str(d)])


def run_deps(stubs, policy, fail=""):
    env = dict(os.environ,
               PATH=f"{stubs / 'bin'}:{os.environ['PATH']}",
               DEPS_POLICY_RC_D=str(policy),
               STUB_LOG=str(stubs / "log"),
               STUB_FAIL=fail)
    return subprocess.run(["make", "-s", "--no-print-directory", "deps-apt", f"APT_PACKAGES={FAKE_PKG}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=MAKE_TIMEOUT_S)


def test_no_service_starts_during_install_and_the_policy_goes_after(stubs):
    policy = stubs / "policy-rc.d"
    r = run_deps(stubs, policy)
    assert r.returncode == 0, r.stderr
    log = (stubs / "log").read_text()
    assert "policy-exit 101" in log, log
    assert f"install -y -q --no-install-recommends {FAKE_PKG}" in log, log
    assert not policy.exists(), "the policy-rc.d the install put in place was left behind"


def test_an_existing_policy_rc_d_is_kept(stubs):
    policy = stubs / "policy-rc.d"
    mine = "#!/bin/sh\n# the machine's own\nexit 0\n"
    policy.write_text(mine)
    policy.chmod(0o755)
    r = run_deps(stubs, policy)
    assert r.returncode == 0, r.stderr
    log = (stubs / "log").read_text()
    assert "the machine's own" in log and "policy-exit 0" in log, log
    assert policy.read_text() == mine


def test_a_failed_install_names_the_package(stubs):
    policy = stubs / "policy-rc.d"
    r = run_deps(stubs, policy, fail=FAKE_PKG)
    assert r.returncode != 0
    assert f"deps: cannot install {FAKE_PKG}: not in this release's package archive" in r.stderr, r.stderr
    assert not policy.exists()


def test_an_install_stops_nothing(stubs):
    users_redis = RedisServer()
    try:
        r = run_deps(stubs, stubs / "policy-rc.d")
        assert r.returncode == 0, r.stderr
        assert "install" in (stubs / "log").read_text()
        # A SIGTERM takes redis-server a moment to act on: give it that moment.
        time.sleep(SIGNAL_GRACE_S)
        assert users_redis.proc.poll() is None, "make deps stopped a redis-server it did not start"
        assert users_redis.client().ping()
    finally:
        users_redis.cleanup()
