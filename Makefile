# pgha: the two commands a newcomer needs are `make demo` and `make test`.
GO      ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(PATH)
DEMO_DIR ?= $(shell mktemp -d -t pgha-demo.XXXXXX)

.PHONY: all build deps test check demo bench lint ci clean compose-test images faults

all: build

deps:
	@bash scripts/install-deps.sh

build:
	$(GO) build -o bin/pgha ./cmd/pgha
	$(GO) build -o bin/pghactl ./cmd/pghactl

# Every test: unit, integration against real Postgres and etcd, e2e.
test: deps build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	@if docker info >/dev/null 2>&1; then $(MAKE) --no-print-directory compose-test; \
	else echo "compose-test: skipped: no Docker engine here (docker info failed)"; fi

# The fast tier: vet, gofmt and every test that needs no root, Postgres,
# etcd, HAProxy or Docker (go test -short), in well under a minute.
check:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) test -short -count=1 ./...

# The docker-compose stack under failures (kill, rejoin, switchover, etcd
# loss, down -v); needs a Docker engine. Images stay as a build cache.
compose-test: deps
	@bash scripts/compose-test.sh

# The images of docker-compose.yml (base image from Debian's archive when
# no registry provides debian:bookworm-slim).
images: deps build
	@bash scripts/docker-base-image.sh
	docker-compose build

# The long fault suite (e2e/faults; needs root): FAULTS faults of a random
# schedule from SEED (0: from the clock), in synchronous then asynchronous
# mode (SYNC=on|off|both), or a named scenario N times
# (SCENARIO=daemon-kill N=20). Reports and logs go to faults-out/.
FAULTS   ?= 50
SEED     ?= 0
SYNC     ?= both
SCENARIO ?= random
N        ?= 20
faults: deps
	FAULTS_FULL=1 FAULTS_COUNT=$(FAULTS) FAULTS_SEED=$(SEED) FAULTS_SYNC=$(SYNC) FAULTS_SCENARIO=$(SCENARIO) \
	FAULTS_N=$(N) FAULTS_OUT=$(CURDIR)/faults-out \
	$(GO) test -count=1 -v -timeout 6h -run '^TestFaults$$' ./e2e/faults/

demo: deps build
	./bin/pgha demo --dir $(DEMO_DIR)

bench: deps build
	$(GO) test -run '^$$' -bench . -benchmem ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

ci: lint test

clean:
	rm -rf bin
