# sqs2pg: the two commands that matter are `make demo` and `make test`; both set up a bare machine.
# (hooks: see DEVELOPERS.md)
.PHONY: hooks all deps deps-faults build test deploy-test test-unit test-asan fuzz fuzz-ci faults soak demo stack-up stack-down bench bench-micro bench-http-floor format clean install deb

BUILD_DIR ?= build
ASAN_BUILD_DIR ?= build-asan
BENCH_BUILD_DIR ?= build-bench
FUZZ_BUILD_DIR ?= build-fuzz
# Seconds each libFuzzer target runs: `make fuzz` (FUZZ_SECONDS=600 make fuzz for a long run) and
# the short pass in `make test`.
FUZZ_SECONDS ?= 60
FUZZ_CI_SECONDS ?= 10
JOBS ?= $(shell nproc)
CMAKE_GENERATOR ?= Ninja

all: build

deps:
	@scripts/install-deps

$(BUILD_DIR)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD_DIR) -G $(CMAKE_GENERATOR) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)
	@echo "built $(BUILD_DIR)/sqs2pg"

# Unit and integration tests (integration tests start their own Postgres, fauxqs and moto_server
# on free loopback ports and stop them afterwards), then the same suite built with ASan+UBSan,
# then every fuzz target for FUZZ_CI_SECONDS.
test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) test-asan
	$(MAKE) fuzz-ci

# Every fault-injection scenario (issue 7), quick and long (pg_auto_failover failovers, 60,000-message
# SIGKILL drain, stalls); one result line each, collected in docs/reliability.md. `make test` runs the
# quick ones through ctest (label faults). FAULTS_ARGS adds runner options, e.g. FAULTS_ARGS=--runs=3.
# The second line runs the scenarios that do not poison login rows again with orders and
# examples/orders.toml: the guarantees hold for any mapping (issue 18).
faults: build deps-faults
	tests/faults/faults.py run all $(FAULTS_ARGS)
	tests/faults/faults.py run --mapping orders sqs-mix sqs-partial pg-restart pg-terminate kill9 $(FAULTS_ARGS)

# 1,000,000 messages through one --follow process, RSS sampled every second into docs/soak-rss.csv.
soak: build
	tests/faults/faults.py run soak $(FAULTS_ARGS)

deps-faults:
	@scripts/install-deps --faults

test-unit: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) -L unit

test-asan: deps
	cmake -S . -B $(ASAN_BUILD_DIR) -G $(CMAKE_GENERATOR) -DCMAKE_BUILD_TYPE=Debug -DSQS2PG_SANITIZE=ON
	cmake --build $(ASAN_BUILD_DIR) -j $(JOBS)
	cd $(ASAN_BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

# libFuzzer targets (fuzz/), built with clang, ASan and UBSan in $(FUZZ_BUILD_DIR). A crash stops
# with exit 1 and leaves the input in $(FUZZ_BUILD_DIR)/artifacts/. Figures: docs/reliability.md.
fuzz: deps
	FUZZ_BUILD_DIR=$(FUZZ_BUILD_DIR) JOBS=$(JOBS) scripts/fuzz --seconds $(FUZZ_SECONDS)

fuzz-ci: deps
	FUZZ_BUILD_DIR=$(FUZZ_BUILD_DIR) JOBS=$(JOBS) scripts/fuzz --seconds $(FUZZ_CI_SECONDS)

demo: build
	@scripts/demo

# Benchmarks: micro (Google Benchmark, CPU per message) and end to end (bench/e2e against a
# private stack). Figures and the commands behind them are in docs/benchmarks.md.
bench: build bench-micro
	bench/e2e

bench-micro: deps
	cmake -S . -B $(BENCH_BUILD_DIR) -G $(CMAKE_GENERATOR) -DCMAKE_BUILD_TYPE=Release -DSQS2PG_BUILD_BENCH=ON -DSQS2PG_BUILD_TESTS=OFF
	cmake --build $(BENCH_BUILD_DIR) -j $(JOBS) --target micro_bench sqs2pg
	$(BENCH_BUILD_DIR)/bench/micro/micro_bench --benchmark_min_time=0.5

# The request path alone (receive + delete through libcurl, through plain keep-alive sockets, and
# over TLS): docs/benchmarks.md, "The HTTP floor".
bench-http-floor: deps
	cmake -S . -B $(BENCH_BUILD_DIR) -G $(CMAKE_GENERATOR) -DCMAKE_BUILD_TYPE=Release -DSQS2PG_BUILD_BENCH=ON -DSQS2PG_BUILD_TESTS=OFF
	cmake --build $(BENCH_BUILD_DIR) -j $(JOBS) --target http_floor sqs2pg
	bench/http_floor.sh --build $(BENCH_BUILD_DIR) --tls

stack-up: deps
	@scripts/stack up

stack-down:
	@scripts/stack down

# The pre-commit reminder to compare a data-path change against main (DEVELOPERS.md).
hooks:
	git config core.hooksPath tools/githooks
	@echo "hooks: tools/githooks (pre-commit reminds you to run bench/compare)"

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD_DIR) $(ASAN_BUILD_DIR) $(BENCH_BUILD_DIR) $(FUZZ_BUILD_DIR)

# CMake's install rules: the binary, the example config, the systemd unit and the man page.
# PREFIX=/usr for a system install (DESTDIR=... for staging).
PREFIX ?= /usr/local
install: build
	cmake --install $(BUILD_DIR) --prefix $(PREFIX)

# The deploy files run for real in podman (issue 19): the image, docker-compose.yml, the .deb on a
# bare Debian, the units under systemd, the Kubernetes manifests rendered, validated and their pod
# run. One PASS/FAIL line per step. Needs root; installs podman, debootstrap and docker-compose.
# Not part of `make test`: it needs no less than a container engine. See docs/operations.md.
deploy-test: deb
	tests/deploy/deploy_test.sh $(BUILD_DIR)

# A .deb of the same (build/sqs2pg_VERSION_ARCH.deb); Depends comes from dpkg-shlibdeps.
deb: build
	cd $(BUILD_DIR) && cpack -G DEB
	@ls $(BUILD_DIR)/sqs2pg_*.deb
