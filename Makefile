# afsp - plain Makefile with pkg-config. Everything is built under $(BUILD); nothing in the
# source folders. `make SANITIZER=address,undefined` builds an instrumented tree in build/asan,
# `make SANITIZER=thread` one in build/tsan.

PKGS      := lmdb libcurl jansson libcrypto zlib libzstd libisal fuse3 libsodium libuv
CC        ?= cc
SANITIZER ?=
ifeq ($(SANITIZER),)
BUILD     ?= build
OPT       ?= -O2
else
BUILD     ?= build/$(if $(findstring thread,$(SANITIZER)),tsan,asan)
OPT       ?= -O1 -fno-omit-frame-pointer -fsanitize=$(SANITIZER) -fno-sanitize-recover=all
endif

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS  += -std=gnu11 -g $(OPT) $(WARN) -D_GNU_SOURCE -MMD -MP \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS += $(if $(SANITIZER),-fsanitize=$(SANITIZER))
# libcurl is not linked: store/registry/curl.c loads it when a registry is first asked
LDLIBS  += $(shell pkg-config --libs $(filter-out libcurl,$(PKGS)) 2>/dev/null) -lpthread

LIB_SRC  := $(wildcard util/*.c store/*.c store/*/*.c fs/*.c p2p/*.c dht/*.c node/*.c exec/*.c)
# sim/ (the simulator and the in-memory links) is test support: its own archive, linked by the
# test runner and the benches and compiled into the fuzz targets, never into build/afsp.
SIM_SRC  := $(wildcard sim/*.c)
CMD_SRC  := $(wildcard cmd/*.c)
UNIT_SRC := $(wildcard tests/unit/*.c) tests/runner.c
FUZZ_SRC := $(wildcard fuzz/*.c)
BENCH_SRC := $(wildcard bench/*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
SIM_OBJ  := $(SIM_SRC:%.c=$(BUILD)/obj/%.o)
CMD_OBJ  := $(CMD_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_OBJ := $(UNIT_SRC:%.c=$(BUILD)/obj/%.o)

.PHONY: all docs demo test soak check-tools layering asan tsan fuzz bench bench-compare format format-check deps clean
all: $(BUILD)/afsp $(BUILD)/test-runner $(BUILD)/afsp-forge $(BUILD)/iofault.so $(BUILD)/storecheck

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libafsp.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libafsp_sim.a: $(SIM_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/afsp: $(CMD_OBJ) $(BUILD)/libafsp.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# A member that lies, for the tests (tests/tools/forge.c).
$(BUILD)/afsp-forge: $(BUILD)/obj/tests/tools/forge.o $(BUILD)/libafsp.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# libafsp_sim.a before libafsp.a: sim/ calls into the library.
$(BUILD)/test-runner: $(UNIT_OBJ) $(BUILD)/libafsp_sim.a $(BUILD)/libafsp.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Fault injection (tests/fault, docs/faults.md): the LD_PRELOAD shim and the store checker.
$(BUILD)/iofault.so: tests/fault/iofault.c
	$(CC) -std=gnu11 -g -O2 $(WARN) -D_GNU_SOURCE -shared -fPIC -o $@ $< -ldl

$(BUILD)/storecheck: tests/fault/storecheck.c $(BUILD)/libafsp.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libafsp_sim.a $(BUILD)/libafsp.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# docs/cli.md's counters table, from the counters' list (a unit test checks they agree).
docs: all
	bash scripts/docs-counters.sh $(BUILD)/afsp docs/cli.md

deps:
	@sh scripts/deps.sh

# The main job on an embedded default: a registry on loopback, an image, afsp pull, listings.
demo: deps
	$(MAKE) all
	AFSP_BIN=$(abspath $(BUILD)/afsp) bash scripts/demo.sh

# The whole suite: unit tests, then the integration scripts against the real binary.
test: deps
	$(MAKE) all
	AFSP_BIN=$(abspath $(BUILD)/afsp) AFSP_SRC=$(CURDIR) \
	    $(BUILD)/test-runner --scripts tests/integration $(T)

# The long fault injection into the store's writes (docs/faults.md): the integration test
# 70-store-faults with FAULT_LONG=1 (the fixture image, every N of every write path, the mount).
# `make test` runs its short version.
soak: deps
	$(MAKE) all
	FAULT_LONG=1 AFSP_BIN=$(abspath $(BUILD)/afsp) AFSP_SRC=$(CURDIR) \
	    $(BUILD)/test-runner --scripts tests/integration --script-timeout 7200 70-store-faults

# Every command the tests, scripts and recipes call comes from a package deps.sh installs (also
# run by `make test`, as the integration test 01-tools).
check-tools: deps
	scripts/check-tools.py

# Every #include against the allowed-imports table of docs/architecture.md (also run by make test:
# tests/integration/02-layering.sh).
layering:
	scripts/layering.py

# Sanitizer reports go to files, so that one from a command a test expects to fail (exit status
# ignored) still fails the run.
ASAN_LOGS := /tmp/afsp-asan-logs
asan: deps
	$(MAKE) SANITIZER=address,undefined all
	rm -rf $(ASAN_LOGS) && mkdir -p $(ASAN_LOGS)
	ASAN_OPTIONS=detect_leaks=1:log_path=$(ASAN_LOGS)/asan \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(ASAN_LOGS)/ubsan \
	AFSP_BIN=$(abspath build/asan/afsp) AFSP_SRC=$(CURDIR) \
	    build/asan/test-runner --scripts tests/integration --script-timeout 1800 $(T)
	@if [ -n "$$(ls -A $(ASAN_LOGS))" ]; then \
	    echo "sanitizer reports:"; head -n 40 $(ASAN_LOGS)/*; exit 1; \
	fi; echo "no sanitizer reports"

# ThreadSanitizer over the same suite (T= to choose): the node's task threads and its loop, the
# mount's decoder threads and its fetcher. Reports go to files, as for asan.
TSAN_LOGS := /tmp/afsp-tsan-logs
tsan: deps
	$(MAKE) SANITIZER=thread all
	rm -rf $(TSAN_LOGS) && mkdir -p $(TSAN_LOGS)
	TSAN_OPTIONS=log_path=$(TSAN_LOGS)/tsan:second_deadlock_stack=1 \
	AFSP_BIN=$(abspath build/tsan/afsp) AFSP_SRC=$(CURDIR) \
	    build/tsan/test-runner --scripts tests/integration --script-timeout 1800 $(T)
	@if [ -n "$$(ls -A $(TSAN_LOGS))" ]; then \
	    echo "sanitizer reports:"; head -n 60 $(TSAN_LOGS)/*; exit 1; \
	fi; echo "no sanitizer reports"

# libFuzzer targets, one per parser; each runs FUZZ_SECS seconds from its seed corpus.
# FUZZ_FLAGS is expanded when used: on a fresh machine pkg-config and the headers arrive with
# `deps`, after this file is read. FUZZ_SMALL shrinks the codec's buffers (64 KiB instead of
# 256 KiB-1 MiB): small inputs then reach their edges, and no allocation goes past ASan's mmap
# threshold (the codec target ran 460 inputs/s with the real sizes, 3,600 with these).
FUZZ_SECS ?= 30
FUZZ_SMALL = -DGZ_OBUF_ROOM=65536 -DZSTD_OBUF=65536 -DRD_IBUF=65536 -DRD_SCRATCH=65536
FUZZ_FLAGS = -std=gnu11 -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined $(FUZZ_SMALL) \
              $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
build/fuzz/%: fuzz/%.c $(LIB_SRC) $(SIM_SRC)
	@mkdir -p build/fuzz
	clang $(FUZZ_FLAGS) -o $@ $< $(SIM_SRC) $(LIB_SRC) $(LDLIBS)
fuzz: deps $(FUZZ_SRC:fuzz/%.c=build/fuzz/%)
	@set -e; for f in $(FUZZ_SRC:fuzz/%.c=%); do \
	    mkdir -p build/fuzz/corpus-$$f; \
	    seeds=; [ -d fuzz/seeds/$$f ] && seeds=fuzz/seeds/$$f; \
	    echo "fuzz $$f ($(FUZZ_SECS)s)"; \
	    if ! build/fuzz/$$f -max_total_time=$(FUZZ_SECS) -print_final_stats=0 \
	        build/fuzz/corpus-$$f $$seeds >build/fuzz/$$f.log 2>&1; then \
	        tail -n 60 build/fuzz/$$f.log; echo "fuzz $$f: FAILED (build/fuzz/$$f.log)"; exit 1; \
	    fi; \
	    tail -n 1 build/fuzz/$$f.log; \
	done

bench: deps all $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
	AFSP_BIN=$(abspath $(BUILD)/afsp) AFSP_BENCH_BIN=$(abspath $(BUILD)/bench) \
	    bash bench/run.sh

# `make bench-compare OLD=REV`: parts peer and cold for REV's build and this tree's, interleaved
# round by round in one run (bench/run.sh, AFSP_BIN_OLD), with old vs new medians, best rounds
# and ratios. REV is built in a temporary git worktree under build/ (its own build dir, removed
# afterwards, also when its build fails); its binary is kept as build/afsp-old.
OLD_WT := build/old-src
bench-compare: deps all $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
	@test -n "$(OLD)" || { echo "usage: make bench-compare OLD=REV [BENCH_ROUNDS=N]" >&2; exit 1; }
	rm -rf $(OLD_WT) && git worktree prune
	set -e; trap 'git worktree remove --force $(OLD_WT) 2>/dev/null || rm -rf $(OLD_WT); \
	    git worktree prune' EXIT; \
	    git worktree add --detach $(OLD_WT) $(OLD); \
	    $(MAKE) -C $(OLD_WT) BUILD=build SANITIZER= build/afsp; \
	    cp $(OLD_WT)/build/afsp build/afsp-old
	BENCH_ONLY="$${BENCH_ONLY:-peer cold}" AFSP_BIN_OLD=$(abspath build/afsp-old) \
	    AFSP_OLD_REV=$$(git rev-parse --short $(OLD)) \
	    AFSP_BIN=$(abspath $(BUILD)/afsp) AFSP_BENCH_BIN=$(abspath $(BUILD)/bench) \
	    bash bench/run.sh

FORMAT_SRC := $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FORMAT_SRC)
format-check:
	@test -n "$(FORMAT_SRC)" || { echo "format-check: git ls-files lists no C file"; exit 1; }
	clang-format --dry-run --Werror $(FORMAT_SRC)

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
