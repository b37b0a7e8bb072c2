# tickerd: one libuv loop that serves HTTP, runs background tasks, publishes
# market data to Redis and fans it out over WebSocket and SSE.
#
#   make                  install what building needs, build the binary and the dashboard
#   make run              install what building and running need, build, run on the embedded default
#   make test             install everything (test tools too), build, every test (unit, integration, browser)
#   make test SANITIZE=1  the same suite under ASan + UBSan (build-san/)
#   make fuzz             every libFuzzer harness for FUZZ_SECONDS (600) each
#   make fuzz-coverage    line coverage of each harness's target files (clang)
#   make soak             SOAK_MINUTES (30) of mixed load while Redis is killed (not in CI)
#   make bench            benchmarks against reference servers (see bench/)

.DEFAULT_GOAL := all
include deps.mk

SANITIZE ?= 0
WERROR   ?= 0
ifeq ($(SANITIZE),1)
BUILD    ?= build-san
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
OPT      := -O1
else
BUILD    ?= build
SAN_FLAGS :=
OPT      := -O2
endif

CC      ?= cc
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter -Wformat=2
ifeq ($(WERROR),1)
WARN    += -Werror
endif
CFLAGS  := -std=c11 -D_GNU_SOURCE -g $(OPT) $(WARN) $(SAN_FLAGS) -Iinclude -Isrc $(DEPS_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := $(SAN_FLAGS)
LDLIBS  := $(DEPS_LIBS)

# llhttp 8.1 from sources (bookworm; deps.mk): strict mode closes
# CVE-2023-30589 (bare CR smuggling); no lenient flag is ever set.
LLHTTP_CFLAGS := -std=c11 -g $(OPT) -DLLHTTP_STRICT_MODE=1 $(SAN_FLAGS) -I$(LLHTTP_INC_DIR) -w
LLHTTP_OBJS   := $(LLHTTP_SOURCES:%.c=$(BUILD)/llhttp/%.o)

# One folder per layer (docs/architecture.md); main.c is the program, the rest a library.
SRCS      := $(sort $(wildcard src/*/*.c))
LIB_SRCS  := $(filter-out src/app/main.c,$(SRCS))
HEADERS   := $(wildcard include/*/*.h src/*/*.h)
LIB_OBJS  := $(LIB_SRCS:src/%.c=$(BUILD)/obj/%.o)
LIB       := $(BUILD)/libtickerd.a
BIN       := $(BUILD)/tickerd

UNIT_SRCS := $(sort $(wildcard test/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:test/unit/%.c=$(BUILD)/test/%)

# Dashboard assets: web/ plus the front-end libraries vendored from npm,
# assembled by web/build.sh into $(BUILD)/web, which tickerd serves.
WEB_DIR := $(BUILD)/web
$(WEB_DIR)/.stamp: $(wildcard web/* web/*/*) package-lock.json
	@if [ -x web/build.sh ]; then web/build.sh $(WEB_DIR); else mkdir -p $(WEB_DIR); fi
	@touch $@

# Load generators and probes of `make bench`: one C file each under bench/.
BENCH_SRCS := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)
$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)
# the kernel's cost per delivery, by send(2) or io_uring (docs/perf-fan.md)
$(BUILD)/bench/loopback_floor: LDLIBS += -luring

# ---- Entry targets -----------------------------------------------------------
# all, run, test, fuzz and bench install what they need, then do the work in a
# sub-make. The sub-make reads the Makefile and deps.mk again, with the
# packages present: what make decides when it reads them (which llhttp,
# pkg-config flags, the directories it caches for pattern rules) must never
# come from a state before the install. The targets below the entry targets
# (build, test-unit, ...) install nothing and assume the packages are there.

.PHONY: all build run test test-layers test-unit test-integration test-browser test-fuzz fuzz fuzz-build fuzz-run fuzz-coverage fuzz-coverage-run soak bench bench-run clean
all:
	@$(MAKE) --no-print-directory deps-build
	@$(MAKE) --no-print-directory build

build: $(BIN) $(WEB_DIR)/.stamp

# The embedded default: a local redis-server when none answers at REDIS_URL,
# stopped on exit, and the simulated feed; the dashboard at /dashboard.
run:
	@$(MAKE) --no-print-directory deps-run
	@$(MAKE) --no-print-directory build
	@scripts/run-default.sh $(BIN) $(ARGS)

# Sanitized runs skip the browser test (it checks the page, not memory) and
# the fuzz smoke run (the harnesses carry their own sanitizers).
ifeq ($(SANITIZE),1)
TEST_GOALS := build test-layers test-unit test-integration
else
TEST_GOALS := build test-layers test-unit test-integration test-browser test-fuzz
endif
test:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory $(TEST_GOALS)

fuzz:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory fuzz-run

fuzz-coverage:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory fuzz-coverage-run

bench:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory build bench-run

# The README's quick start on bare Debian 12 and 13 roots (debootstrap, chroot):
# `make run` serves quotes and the dashboard, then `make test` passes. Needs
# root; installs its own tools (DEPS_FRESH); caches in /var/cache/tickerd-fresh.
# FRESH_RELEASES narrows it.
FRESH_RELEASES ?= bookworm trixie
.PHONY: test-fresh
test-fresh:
	@$(MAKE) --no-print-directory deps-apt APT_PACKAGES='$(DEPS_FRESH)'
	@scripts/test-fresh.sh $(FRESH_RELEASES)

# ---- Build --------------------------------------------------------------------
$(BUILD)/llhttp/%.o: $(LLHTTP_SRC_DIR)/%.c
	@mkdir -p $(@D)
	@echo "CC $< (llhttp, strict mode)"
	@$(CC) $(LLHTTP_CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: src/%.c $(HEADERS)
	@mkdir -p $(@D)
	@echo "CC $<"
	@$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJS) $(LLHTTP_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(BUILD)/obj/app/main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Unit tests include the module under test where they need its statics.
$(BUILD)/test/%: test/unit/%.c $(LIB) $(wildcard test/unit/*.h)
	@mkdir -p $(@D)
	@echo "LD $@"
	@$(CC) $(CFLAGS) -Isrc -o $@ $< $(LIB) $(LDLIBS) $(CMOCKA_LIBS)

# The layering rule of src/ and include/ (docs/architecture.md), from the #include lines.
test-layers:
	@$(PYTHON) scripts/check_layers.py

test-unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

# Under the sanitizers RSS says little (shadow memory, quarantine): tests
# skip their memory bounds there and keep them in the plain run.
test-integration: $(BIN)
	TICKERD_BIN=$(abspath $(BIN)) TICKERD_SANITIZED=$(SANITIZE) $(PYTHON) -m pytest -q -p no:cacheprovider test/integration $(PYTEST_ARGS)

test-browser: $(BIN) $(WEB_DIR)/.stamp
	TICKERD_BIN=$(abspath $(BIN)) BUILD_DIR=$(abspath $(BUILD)) $(NODE_FOR_TESTS) --test test/browser/

# Every harness builds and runs clean for a few seconds; `make fuzz` runs longer.
test-fuzz:
	@$(MAKE) --no-print-directory fuzz-run FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS)
FUZZ_SMOKE_SECONDS ?= 10

# libFuzzer harnesses: clang, ASan + UBSan. The modules are compiled once
# into an archive, so a harness may #include the .c it needs the statics of.
FUZZ_SECONDS ?= 600
FUZZ_DIR  := build-fuzz
FUZZ_SRCS := $(sort $(wildcard test/fuzz/fuzz_*.c))
FUZZ_BINS := $(FUZZ_SRCS:test/fuzz/%.c=$(FUZZ_DIR)/%)
FUZZ_SAN  := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 $(FUZZ_SAN) -Iinclude -Isrc $(DEPS_CFLAGS)
FUZZ_OBJS := $(LIB_SRCS:src/%.c=$(FUZZ_DIR)/obj/%.o) $(LLHTTP_SOURCES:%.c=$(FUZZ_DIR)/llhttp/%.o)
$(FUZZ_DIR)/llhttp/%.o: $(LLHTTP_SRC_DIR)/%.c
	@mkdir -p $(@D)
	@echo "CC $< (fuzz)"
	@clang -std=c11 -g -O1 -DLLHTTP_STRICT_MODE=1 -fsanitize=fuzzer-no-link $(FUZZ_SAN) -I$(LLHTTP_INC_DIR) -w -c $< -o $@
$(FUZZ_DIR)/obj/%.o: src/%.c $(HEADERS)
	@mkdir -p $(@D)
	@echo "CC $< (fuzz)"
	@clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
$(FUZZ_DIR)/libtickerd.a: $(FUZZ_OBJS)
	@rm -f $@
	@ar rcs $@ $^
$(FUZZ_DIR)/%: test/fuzz/%.c $(FUZZ_DIR)/libtickerd.a
	@echo "LD $@"
	@clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_DIR)/libtickerd.a $(LDLIBS)
fuzz-build: $(FUZZ_BINS)
fuzz-run: fuzz-build
	@set -e; for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p $(FUZZ_DIR)/corpus/$$n test/fuzz/seeds/$$n; \
	  echo "== $$n ($(FUZZ_SECONDS)s)"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -close_fd_mask=3 -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/corpus/$$n test/fuzz/seeds/$$n > $(FUZZ_DIR)/$$n.log 2>&1 \
	    || { tail -n 60 $(FUZZ_DIR)/$$n.log; exit 1; }; \
	  grep -E "^stat::number_of_executed_units|^Done" $(FUZZ_DIR)/$$n.log; done

# Line coverage of the files each harness targets, over its seeds and the
# corpus `make fuzz` grew (if any): every harness is rebuilt with clang's
# source-based coverage (no sanitizers), replays each input once, bounded by
# FUZZ_COV_SECONDS, and llvm-cov reports the target files. The targets are
# named by file name and found under src/ wherever the layer puts them.
FUZZ_COV_DIR := build-fuzz-cov
FUZZ_COV_SECONDS ?= 300
FUZZ_COV_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fprofile-instr-generate -fcoverage-mapping -Iinclude -Isrc $(DEPS_CFLAGS)
FUZZ_COV_OBJS := $(LIB_SRCS:src/%.c=$(FUZZ_COV_DIR)/obj/%.o) $(LLHTTP_SOURCES:%.c=$(FUZZ_COV_DIR)/llhttp/%.o)
FUZZ_COV_BINS := $(FUZZ_SRCS:test/fuzz/%.c=$(FUZZ_COV_DIR)/%)
FUZZ_TARGETS_fuzz_http_request := conn.c http1.c server.c router.c ws_session.c sse.c ws_frame.c hub.c hub_wild.c api_core.c api_quotes.c
FUZZ_TARGETS_fuzz_ws_frame     := ws_frame.c utf8.c
FUZZ_TARGETS_fuzz_ws_deflate   := ws_deflate.c ws_frame.c
FUZZ_TARGETS_fuzz_stream_msg   := smsg_schema.c smsg_parse.c smsg_encode.c smsg_fast.c smsg_scan.c smsg_payload.c
FUZZ_TARGETS_fuzz_hcli_url     := https_client.c url.c
FUZZ_TARGETS_fuzz_jwt          := jwt.c
FUZZ_TARGETS_fuzz_params       := redis_conn.c sentinel.c config.c http1.c url.c uuid.c hub_wild.c
$(FUZZ_COV_DIR)/llhttp/%.o: $(LLHTTP_SRC_DIR)/%.c
	@mkdir -p $(@D)
	@clang -std=c11 -g -O1 -DLLHTTP_STRICT_MODE=1 -fsanitize=fuzzer-no-link -I$(LLHTTP_INC_DIR) -w -c $< -o $@
$(FUZZ_COV_DIR)/obj/%.o: src/%.c $(HEADERS)
	@mkdir -p $(@D)
	@echo "CC $< (coverage)"
	@clang $(FUZZ_COV_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
$(FUZZ_COV_DIR)/libtickerd.a: $(FUZZ_COV_OBJS)
	@rm -f $@
	@ar rcs $@ $^
$(FUZZ_COV_DIR)/%: test/fuzz/%.c $(FUZZ_COV_DIR)/libtickerd.a
	@echo "LD $@ (coverage)"
	@clang $(FUZZ_COV_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_COV_DIR)/libtickerd.a $(LDLIBS)
fuzz-coverage-run: $(FUZZ_COV_BINS)
	@set -e; $(foreach f,$(FUZZ_COV_BINS),LLVM_PROFDATA=$(LLVM_PROFDATA) LLVM_COV=$(LLVM_COV) \
	  test/fuzz/coverage.sh $(f) $(FUZZ_COV_SECONDS) $(FUZZ_DIR)/corpus/$(notdir $(f)) $(FUZZ_TARGETS_$(notdir $(f)));)

# Soak (not in CI): SOAK_MINUTES of /hello, 2,000 churning WS/SSE clients,
# slow readers and 5,000 quotes/s while Redis is SIGKILLed every 2 minutes;
# samples, checks and a plot in $(BUILD)/soak (bench/soak.py, README).
SOAK_MINUTES ?= 30
soak:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory build
	$(PYTHON) bench/soak.py $(abspath $(BIN)) --minutes $(SOAK_MINUTES) --out $(BUILD)/soak

bench-run: $(BENCH_BINS)
	@bench/run.sh $(abspath $(BIN))

# Only when llhttp's sources are used and missing: say so instead of make's
# "No rule to make target".
$(LLHTTP_SRC_DIR)/%.c:
	@echo "llhttp: $@ is missing: run 'make deps' (package $(LLHTTP_PKG))" >&2; exit 1

clean:
	rm -rf build build-san build-fuzz build-fuzz-cov

# The image built and the compose stack run on a real Docker engine, checked
# from the host (test/docker/run.sh; starts dockerd when no engine answers).
.PHONY: test-docker
test-docker:
	@$(MAKE) --no-print-directory deps-apt APT_PACKAGES='$(DEPS_DOCKER)'
	@DOCKER_ENGINE_PACKAGES='$(DEPS_DOCKER_ENGINE)' test/docker/run.sh
