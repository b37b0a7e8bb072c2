"""Docker deployment files, checked without a Docker engine.

`make test-docker` (test/docker/run.sh) builds and runs all of it on a real
engine; this file runs inside `make test` and checks, without an engine:
  * docker-compose (Debian's v1) parses and resolves docker/docker-compose.yml
    with no .env (the defaults), and with a docker/.env and the environment;
  * the Dockerfile has the structure the deployment relies on (two stages,
    non-root user, health check on /healthz, port 8000);
  * the build stage's RUN lines that call make, run in a clean copy of the tracked
    files, build a binary that starts, and every path the runtime stage copies
    out of the build stage exists;
  * the runtime stage installs the Debian package of every shared library the
    binary links.
"""
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "docker-compose.yml"
BUILD_WORKDIR = "/src"          # WORKDIR of the build stage
BUILD_TIMEOUT_S = 600


# ---- Dockerfile parsing ------------------------------------------------------

def parse_dockerfile(path):
    """Returns a list of stages: {"from": image, "name": alias, "ins": [(KEYWORD, args)]}."""
    stages, logical = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if logical and line.startswith("#"):
            continue  # comment lines inside a continuation are dropped by Docker too
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, args = logical.strip().partition(" ")
        keyword, args = keyword.upper(), args.strip()
        logical = ""
        if keyword == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", args, re.I)
            assert m, f"unparsable FROM: {args}"
            stages.append({"from": m.group(1), "name": m.group(2), "ins": []})
        else:
            assert stages, f"{keyword} before any FROM"
            stages[-1]["ins"].append((keyword, args))
    return stages


def instructions(stage, keyword):
    return [args for k, args in stage["ins"] if k == keyword]


@pytest.fixture(scope="module")
def stages():
    return parse_dockerfile(DOCKERFILE)


def test_dockerfile_has_build_and_slim_runtime_stage(stages):
    assert len(stages) == 2, [s["from"] for s in stages]
    build, runtime = stages
    assert build["from"] == "debian:bookworm" and build["name"] == "build"
    assert runtime["from"] == "debian:bookworm-slim"
    assert instructions(build, "WORKDIR") == [BUILD_WORKDIR]
    # The runtime stage takes only built files from the build stage, never the sources.
    assert not instructions(runtime, "COPY") or all(
        a.startswith("--from=build ") for a in instructions(runtime, "COPY"))


def test_dockerfile_runtime_user_port_healthcheck(stages):
    runtime = stages[-1]
    users = instructions(runtime, "USER")
    assert users, "runtime stage must drop root"
    assert users[-1].split(":")[0] not in ("root", "0")
    # USER comes before ENTRYPOINT/CMD so the service never runs as root.
    order = [k for k, _ in runtime["ins"]]
    assert order.index("USER") < order.index("ENTRYPOINT")
    assert instructions(runtime, "EXPOSE") == ["8000"]
    env = " ".join(instructions(runtime, "ENV"))
    assert re.search(r"\bTICKERD_HOST=0\.0\.0\.0\b", env)
    checks = instructions(runtime, "HEALTHCHECK")
    assert len(checks) == 1 and "CMD" in checks[0] and "/healthz" in checks[0]
    # The health check's tool must be installed in the runtime stage.
    tool = re.search(r"CMD\s+(\S+)", checks[0]).group(1)
    assert tool in " ".join(instructions(runtime, "RUN")), f"{tool} not installed"


def test_dockerignore_keeps_local_state_out_of_the_context():
    # Docker reads .dockerignore at the root of the context, which is the repository root.
    entries = {l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()
               if l.strip() and not l.startswith("#")}
    # docker/.env holds secrets too; docker/extra-ca.crt must stay in the context.
    for must in (".git", "build", "build-*", "node_modules", ".env", "**/.env"):
        assert must in entries, must


def test_env_file_is_git_ignored_and_example_is_not():
    if not shutil.which("git") or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for path in (".env", "docker/.env", "docker/extra-ca.crt"):
        ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", path])
        assert ignored.returncode == 0, f"{path} must be git-ignored"
    example = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", ".env.example"])
    assert example.returncode == 1, ".env.example must be committable"


# ---- docker-compose ----------------------------------------------------------

def compose_vars():
    """The variables the compose file interpolates, ${NAME:-default}."""
    lines = [l for l in COMPOSE.read_text().splitlines() if not l.lstrip().startswith("#")]
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", "\n".join(lines)))


def run_compose_config(dotenv=None, env=None):
    """`docker-compose config` of a copy of docker/, with DOTENV as docker/.env
    (where compose looks for it: the compose file's directory) or none."""
    exe = shutil.which("docker-compose")
    if not exe:
        pytest.skip("docker-compose not installed (Debian package docker-compose)")
    yaml = pytest.importorskip("yaml", reason="python3-yaml (a docker-compose dependency) missing")
    # The caller's environment must not stand in for a missing .env.
    clean = {k: v for k, v in os.environ.items() if k not in compose_vars()}
    clean.update(env or {})
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(ROOT / "docker", Path(tmp) / "docker", ignore=shutil.ignore_patterns(".env", "*.crt"))
        if dotenv is not None:
            (Path(tmp) / "docker" / ".env").write_text(dotenv)
        out = subprocess.run([exe, "-f", str(Path(tmp) / "docker" / "docker-compose.yml"), "config"],
                             capture_output=True, text=True, timeout=60, env=clean)
        assert out.returncode == 0, out.stderr
        return yaml.safe_load(out.stdout)


@pytest.fixture(scope="module")
def compose_config():
    return run_compose_config()


def test_compose_works_without_env_file(compose_config):
    """No .env: every setting has its default in the compose file."""
    env = compose_config["services"]["tickerd"]["environment"]
    assert env["TICKERD_FEED"] == "sim"
    assert env["TICKERD_SYMBOLS"] == "AAPL,MSFT,GOOGL,AAL"
    # Empty means unset for tickerd: no keys, no token.
    for key in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "TICKERD_INGEST_TOKEN", "TICKERD_JWT_SECRET"):
        assert env[key] in ("", None), key
    assert compose_config["services"]["tickerd"]["image"] == "tickerd:latest"


def test_compose_reads_env_file_beside_it_and_the_environment():
    dotenv = (ROOT / ".env.example").read_text() + "TICKERD_SYMBOLS=AAPL,IBM\nTICKERD_PUBLISH_PORT=18123\n"
    config = run_compose_config(dotenv, env={"APCA_API_KEY_ID": "from-the-environment"})
    tickerd = config["services"]["tickerd"]
    assert tickerd["environment"]["TICKERD_SYMBOLS"] == "AAPL,IBM"
    # The environment wins over .env, as compose documents.
    assert tickerd["environment"]["APCA_API_KEY_ID"] == "from-the-environment"
    assert all(p.startswith("127.0.0.1:18123:8000") for p in tickerd["ports"])


def test_compose_redis_is_healthchecked_and_awaited(compose_config):
    services = compose_config["services"]
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    assert redis["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    tickerd = services["tickerd"]
    assert tickerd["depends_on"]["redis"]["condition"] == "service_healthy"
    assert tickerd["environment"]["REDIS_URL"] == "redis://redis:6379"


def test_compose_tickerd_build_and_port(compose_config):
    tickerd = compose_config["services"]["tickerd"]
    assert "env_file" not in tickerd, "a missing env_file stops compose 1.29 at once"
    assert Path(tickerd["build"]["context"]).name != "docker", "context must be the repository root"
    assert tickerd["build"]["dockerfile"] == "docker/Dockerfile"
    assert tickerd["build"]["args"]["EXTRA_CA_CERTS"] in ("", None)
    # Published on the host's loopback only.
    assert tickerd["ports"] and all(p.startswith("127.0.0.1:8000:8000") for p in tickerd["ports"])
    assert "ports" not in compose_config["services"]["redis"]


def test_extra_ca_certs_reach_the_build_stage_only(stages):
    build, runtime = stages
    assert instructions(build, "ARG") == ["EXTRA_CA_CERTS="]
    assert any("NODE_EXTRA_CA_CERTS" in a and "EXTRA_CA_CERTS" in a for a in make_lines(build))
    assert not any("EXTRA_CA" in args for _, args in runtime["ins"])


# ---- the build stage, run without Docker --------------------------------------

def make_lines(stage):
    """The build stage's RUN commands that call make (`make ...` or `&& make ...`),
    whole, as Docker's shell would run them."""
    lines = [a for a in instructions(stage, "RUN") if re.search(r"(^|&&\s*)make\s", a)]
    assert lines, "the build stage must build with make"
    return lines


@pytest.fixture(scope="module")
def clean_build(stages):
    """A copy of the tracked files where the build stage's make lines ran."""
    for tool in ("git", "make", "cc"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed")
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: cannot list the tracked files")
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True,
                           check=True).stdout.decode().split("\0")
    tmp = tempfile.mkdtemp(prefix="tickerd-docker-")
    try:
        for rel in filter(None, files):
            src = ROOT / rel
            if not src.exists():  # deleted in the work tree, not yet committed
                continue
            dst = Path(tmp) / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        # a docker build starts from a clean environment: no make variables
        # inherited from the `make test SANITIZE=1` that may be running us
        env = {k: v for k, v in os.environ.items()
               if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "SANITIZE", "BUILD", "WERROR")}
        for cmd in make_lines(stages[0]):
            out = subprocess.run(["sh", "-c", cmd], cwd=tmp, capture_output=True, text=True,
                                 timeout=BUILD_TIMEOUT_S, env=env)
            assert out.returncode == 0, f"{cmd}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        yield Path(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_build_stage_make_lines_build_a_working_binary(clean_build):
    binary = clean_build / "build" / "tickerd"
    assert binary.is_file() and os.access(binary, os.X_OK)
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    assert re.match(r"tickerd \d+\.\d+\.\d+", out.stdout)


def test_runtime_copies_exist_after_build(stages, clean_build):
    copies = instructions(stages[-1], "COPY")
    assert copies
    for args in copies:
        parts = shlex.split(args)
        sources = [p for p in parts[:-1] if not p.startswith("--")]
        for src in sources:
            assert src.startswith(BUILD_WORKDIR + "/"), src
            rel = src[len(BUILD_WORKDIR) + 1:]
            assert (clean_build / rel).exists(), f"{src} is not produced by the build stage"


def test_runtime_stage_installs_every_linked_library(stages, clean_build):
    if not shutil.which("ldd") or not shutil.which("dpkg"):
        pytest.skip("ldd/dpkg not available")
    ldd = subprocess.run(["ldd", str(clean_build / "build" / "tickerd")], capture_output=True,
                         text=True, check=True).stdout
    libs = re.findall(r"=>\s+(/\S+)", ldd)
    assert libs
    installed = " ".join(instructions(stages[-1], "RUN")).split()
    # libc6 and its siblings are part of debian:bookworm-slim itself.
    base = {"libc6", "libgcc-s1", "libzstd1", "liblzma5", "zlib1g"}
    for lib in libs:
        owner = subprocess.run(["dpkg", "-S", os.path.realpath(lib)], capture_output=True, text=True)
        if owner.returncode != 0:
            owner = subprocess.run(["dpkg", "-S", lib], capture_output=True, text=True)
        assert owner.returncode == 0, f"no Debian package owns {lib}"
        pkg = owner.stdout.split(":")[0]
        assert pkg in base or pkg in installed, f"{lib} ({pkg}) missing from the runtime stage"


def test_env_example_names_only_options_tickerd_knows(clean_build):
    """Every variable of .env.example (set or commented out) is one tickerd reads
    or one the compose file interpolates, and it names all of the latter."""
    help_text = subprocess.run([str(clean_build / "build" / "tickerd"), "--help"], capture_output=True,
                               text=True, timeout=10).stdout
    known = set(re.findall(r"\b[A-Z][A-Z0-9_]+\b", help_text))
    names = re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M)
    assert names
    unknown = [n for n in names if n not in known and n not in compose_vars()]
    assert not unknown, f"neither tickerd nor compose variables: {unknown}"
    assert compose_vars() <= set(names), f"missing from .env.example: {compose_vars() - set(names)}"
