# cgc — quick start: `make run` (showcase) and `make test` (every test).
# Both install what is missing (Debian packages; run as root or with sudo available),
# configure the meson build in $(BUILD) and build it.

BUILD ?= build
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Build: meson, ninja, compilers, libunwind, criterion (tests), google-benchmark (perf).
# Tests and showcase: the real programs run under LD_PRELOAD and the peer allocators
# that perf/compare measures cgc against; valgrind (leak mode is compared with memcheck);
# w3m and guile-3.0 are Boehm-GC programs that tests/bdw runs on cgc's libgc.so.1.
DEPS := meson ninja-build pkg-config gcc g++ clang libclang-rt-14-dev libunwind-dev libcriterion-dev \
        libbenchmark-dev python3 sqlite3 git libmimalloc-dev libjemalloc-dev \
        libgoogle-perftools-dev libgc-dev valgrind w3m guile-3.0 time
# Benchmarks only (`make bench`, `make bench-pause`): Go, the peer of perf/pause-compare.
BENCH_DEPS := golang-go

.PHONY: all deps bench-deps build test run stress bench bench-pause clean

all: build

deps bench-deps: PKGS = $(if $(filter bench-deps,$@),$(BENCH_DEPS),$(DEPS))
deps bench-deps:
	@missing=""; for p in $(PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make: installing:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BUILD)/build.ninja:
	meson setup $(BUILD)

build: deps $(BUILD)/build.ninja
	meson compile -C $(BUILD)

# Everything but the long stress runs (`make stress`) and the benchmarks (`make bench`).
test: build
	meson test -C $(BUILD) --no-suite stress-long --print-errorlogs --num-processes 2

# The long forms: every stress driver and sanitizer lane at full scale, 1,000 forks, 10
# million fuzz executions (tests/fuzz). Takes hours on 2 cores. Ends with a summary table
# (tools/stress_summary.py) of every test and the figures README's "Reliability" quotes.
stress: build
	-nice -n 10 meson test -C $(BUILD) --suite stress --suite stress-long --suite fuzz \
	  --suite sanitize --print-errorlogs --num-processes 1
	python3 tools/stress_summary.py $(BUILD)

bench: build bench-deps
	perf/compare --build $(BUILD)

# Issue #4's pause benchmark: cgc (concurrent and CGC_STOPTHEWORLD=1), Boehm and Go (~4 min).
bench-pause: build bench-deps
	perf/pause-compare --build $(BUILD)

run: build
	tools/showcase.sh $(BUILD)

clean:
	rm -rf $(BUILD) out
