# deps.mk: the one place that names tickerd's dependencies.
#
# Every package comes from Debian bookworm's archive (apt) or from the npm
# registry (package.json + package-lock.json, installed with `npm ci`).
# `make deps` installs whatever is missing and is quiet when all is present.

# Build: the libraries the binary links, and llhttp's C sources.
DEPS_BUILD := build-essential pkg-config clang libclang-rt-14-dev \
              libuv1-dev libhiredis-dev libjansson-dev libssl-dev \
              node-llhttp ca-certificates openssl

# Run: the embedded default of `make run` starts a local Redis.
DEPS_RUN := redis-server redis-tools

# Test: unit tests (cmocka), integration tests (pytest on Debian's python3),
# the reference servers and load tools of `make bench`, the browser test.
DEPS_TEST := libcmocka-dev python3 python3-pytest python3-redis python3-websockets \
             wrk nginx-light libnginx-mod-nchan chromium docker-compose procps liburing-dev

APT_PACKAGES := $(DEPS_BUILD) $(DEPS_RUN) $(DEPS_TEST)
# Node.js and npm (for the dashboard's vendored scripts and the browser test):
# a bookworm machine may carry them from another source; install Debian's
# only when no `npm` is on the PATH, so the two never conflict.
APT_IF_NO_NPM := nodejs npm

# llhttp 8.1.0 as Debian ships it: C sources compiled into build/, never copied.
LLHTTP_SRC_DIR := /usr/share/llhttp
LLHTTP_INC_DIR := /usr/share/include/llhttp
LLHTTP_SOURCES := llhttp.c api.c http.c

PKG_MODULES := libuv hiredis jansson openssl
DEPS_CFLAGS = $(shell pkg-config --cflags $(PKG_MODULES) 2>/dev/null) -I$(LLHTTP_INC_DIR)
DEPS_LIBS = $(shell pkg-config --libs $(PKG_MODULES) 2>/dev/null) -lm
CMOCKA_LIBS = $(shell pkg-config --libs cmocka 2>/dev/null)

# Debian's python3 (not a pyenv shim on the PATH) imports Debian's pytest.
PYTHON := /usr/bin/python3

.PHONY: deps deps-apt deps-npm
deps: deps-apt deps-npm

# dpkg-query prints "install ok installed" per present package; anything else
# is missing. apt-get update runs only when something must be installed.
deps-apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q '^install ok installed$$' || missing="$$missing $$p"; \
	done; \
	command -v npm >/dev/null 2>&1 || missing="$$missing $(APT_IF_NO_NPM)"; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	  $$SUDO sh -c 'pkill -x redis-server; pkill -x nginx; true'; \
	fi

# Front-end and browser-test packages, pinned in package-lock.json.
deps-npm: node_modules/.package-lock.json
node_modules/.package-lock.json: package.json package-lock.json | deps-apt
	@echo "deps: npm ci"; npm ci --no-audit --no-fund --loglevel=error && mkdir -p node_modules && touch $@

# make test-docker: compose, curl for the checks from the host, debootstrap for
# base images when no registry answers. The engine (docker.io) is installed by
# test/docker/run.sh only when no engine answers and there is no dockerd: a
# machine with another Docker (docker-ce) keeps it.
DEPS_DOCKER := docker-compose curl debootstrap
DEPS_DOCKER_ENGINE := docker.io
