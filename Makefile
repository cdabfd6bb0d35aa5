# cgc — quick start: `make run` (showcase) and `make test` (every test).
# Both install what is missing (Debian packages; run as root or with sudo available),
# configure the meson build in $(BUILD) and build it.

BUILD ?= build
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Build: meson, ninja, compilers, libunwind, criterion (tests), google-benchmark (perf).
# Tests and showcase: the real programs run under LD_PRELOAD and the peer allocators
# that perf/compare measures cgc against; w3m and guile-3.0 are Boehm-GC programs that
# tests/bdw runs on cgc's libgc.so.1 (the Boehm GC itself is libgc-dev's libgc1).
DEPS := meson ninja-build pkg-config gcc g++ clang libunwind-dev libcriterion-dev \
        libbenchmark-dev python3 sqlite3 git libmimalloc-dev libjemalloc-dev \
        libgoogle-perftools-dev libgc-dev w3m guile-3.0 time

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

stress: build
	meson test -C $(BUILD) --suite stress --suite stress-long --print-errorlogs --num-processes 1

bench: build
	perf/compare --build $(BUILD)

run: build
	tools/showcase.sh $(BUILD)

clean:
	rm -rf $(BUILD) out
