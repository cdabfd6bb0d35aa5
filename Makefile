# cgc — quick start: `make run` (showcase) and `make test` (every test).
# Both install what is missing (Debian packages; run as root or with sudo available),
# configure the meson build in $(BUILD) and build it.

BUILD ?= build
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Build: meson, ninja, compilers, libunwind, criterion (tests), google-benchmark (perf).
# Tests and showcase: the real programs run under LD_PRELOAD and the peer allocators
# that perf/compare measures cgc against.
DEPS := meson ninja-build pkg-config gcc g++ clang libclang-rt-14-dev libunwind-dev libcriterion-dev \
        libbenchmark-dev python3 sqlite3 git libmimalloc-dev libjemalloc-dev \
        libgoogle-perftools-dev libgc-dev

.PHONY: all deps build test run stress bench clean

all: build

deps:
	@missing=""; for p in $(DEPS); do \
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

bench: build
	perf/compare --build $(BUILD)

run: build
	tools/showcase.sh $(BUILD)

clean:
	rm -rf $(BUILD) out
