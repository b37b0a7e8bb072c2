# tickerd: one libuv loop that serves HTTP, runs background tasks, publishes
# market data to Redis and fans it out over WebSocket and SSE.
#
#   make run              install what is missing, build, run on the embedded default
#   make test             install, build, every test (unit, integration, browser)
#   make test SANITIZE=1  the same suite under ASan + UBSan (build-san/)
#   make fuzz             every libFuzzer harness for FUZZ_SECONDS each
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
CFLAGS  := -std=c11 -D_GNU_SOURCE -g $(OPT) $(WARN) $(SAN_FLAGS) -Iinclude $(DEPS_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := $(SAN_FLAGS)
LDLIBS  := $(DEPS_LIBS)

# llhttp: strict mode closes CVE-2023-30589 (bare CR smuggling); no lenient flag is ever set.
LLHTTP_CFLAGS := -std=c11 -g $(OPT) -DLLHTTP_STRICT_MODE=1 $(SAN_FLAGS) -I$(LLHTTP_INC_DIR) -w
LLHTTP_OBJS   := $(LLHTTP_SOURCES:%.c=$(BUILD)/llhttp/%.o)

SRCS      := $(sort $(wildcard src/*.c))
LIB_SRCS  := $(filter-out src/main.c,$(SRCS))
LIB_OBJS  := $(LIB_SRCS:src/%.c=$(BUILD)/obj/%.o)
LIB       := $(BUILD)/libtickerd.a
BIN       := $(BUILD)/tickerd

UNIT_SRCS := $(sort $(wildcard test/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:test/unit/%.c=$(BUILD)/test/%)

# Dashboard assets: web/ plus the front-end libraries vendored from npm,
# assembled by web/build.sh into $(BUILD)/web, which tickerd serves.
WEB_DIR := $(BUILD)/web
$(WEB_DIR)/.stamp: $(wildcard web/* web/*/*) package-lock.json | deps-npm
	@if [ -x web/build.sh ]; then web/build.sh $(WEB_DIR); else mkdir -p $(WEB_DIR); fi
	@touch $@

# Load generators and probes of `make bench`: one C file each under bench/.
BENCH_SRCS := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)
$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)

.PHONY: all run test test-unit test-integration test-browser fuzz fuzz-build bench clean check-layout
all: $(BIN) $(WEB_DIR)/.stamp

$(BUILD)/llhttp/%.o: $(LLHTTP_SRC_DIR)/%.c | deps-apt
	@mkdir -p $(@D)
	@echo "CC $< (llhttp, strict mode)"
	@$(CC) $(LLHTTP_CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: src/%.c $(wildcard include/*.h) | deps-apt
	@mkdir -p $(@D)
	@echo "CC $<"
	@$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJS) $(LLHTTP_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(BUILD)/obj/main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Unit tests include the module under test where they need its statics.
$(BUILD)/test/%: test/unit/%.c $(LIB) $(wildcard test/unit/*.h)
	@mkdir -p $(@D)
	@echo "LD $@"
	@$(CC) $(CFLAGS) -Isrc -o $@ $< $(LIB) $(LDLIBS) $(CMOCKA_LIBS)

# The embedded default: a local redis-server when none answers at REDIS_URL,
# stopped on exit, and the simulated feed.
run: deps $(BIN)
	@scripts/run-default.sh $(BIN) $(ARGS)

test-unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

test-integration: $(BIN)
	TICKERD_BIN=$(abspath $(BIN)) $(PYTHON) -m pytest -q -p no:cacheprovider test/integration $(PYTEST_ARGS)

test-browser: $(BIN) deps-npm
	TICKERD_BIN=$(abspath $(BIN)) BUILD_DIR=$(abspath $(BUILD)) node --test test/browser/

# Sanitized runs skip the browser test: it checks the page, not memory.
ifeq ($(SANITIZE),1)
test: deps all test-unit test-integration
else
test: deps all test-unit test-integration test-browser
endif

# libFuzzer harnesses: clang, ASan + UBSan, every module but main.
FUZZ_SECONDS ?= 30
FUZZ_SRCS := $(sort $(wildcard test/fuzz/fuzz_*.c))
FUZZ_BINS := $(FUZZ_SRCS:test/fuzz/%.c=build-fuzz/%)
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc $(DEPS_CFLAGS)
build-fuzz/llhttp/%.o: $(LLHTTP_SRC_DIR)/%.c | deps-apt
	@mkdir -p $(@D)
	clang -std=c11 -g -O1 -DLLHTTP_STRICT_MODE=1 -fsanitize=fuzzer-no-link,address,undefined -I$(LLHTTP_INC_DIR) -w -c $< -o $@
build-fuzz/%: test/fuzz/%.c $(LIB_SRCS) $(wildcard include/*.h) $(LLHTTP_SOURCES:%.c=build-fuzz/llhttp/%.o)
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -o $@ $< $(LIB_SRCS) $(LLHTTP_SOURCES:%.c=build-fuzz/llhttp/%.o) $(LDLIBS)
fuzz-build: $(FUZZ_BINS)
fuzz: deps fuzz-build
	@set -e; for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p build-fuzz/corpus/$$n; \
	  echo "== $$n ($(FUZZ_SECONDS)s)"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 build-fuzz/corpus/$$n test/fuzz/seeds/$$n 2>&1 | tail -n 12; done

bench: deps all $(BENCH_BINS)
	@bench/run.sh $(abspath $(BIN))

clean:
	rm -rf build build-san build-fuzz
