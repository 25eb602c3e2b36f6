# cryo: the two commands a newcomer needs are `make demo` and `make test`.
export PATH := /usr/local/go/bin:$(PATH)

GO ?= go
# Debian packages the tests need, as "command:package" pairs.
DEPS := gcc:gcc ping:iputils-ping crit:criu qemu-system-x86_64:qemu-system-x86 python3:python3 redis-server:redis-server nginx:nginx java:default-jre-headless tmux:tmux vim:vim stress-ng:stress-ng memcached:memcached node:nodejs dnsmasq:dnsmasq-base psql:postgresql mariadbd:mariadb-server chronyd:chrony rsyslogd:rsyslog

.PHONY: all build demo test deps fuzz fixtures bench matrix clean

all: build

# Static (no cgo): a cryo that links glibc starts about 3 ms slower, and a
# dump starts cryo twice.
build:
	CGO_ENABLED=0 $(GO) build -o bin/cryo ./cmd/cryo

# deps installs the Debian packages whose commands are missing.
deps:
	@missing=""; for d in $(DEPS); do \
		command -v $${d%%:*} >/dev/null 2>&1 || missing="$$missing $${d#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

demo: build
	./bin/cryo check
	@echo
	./bin/cryo demo

# The tracer package runs twice: as built, and with its tracer-thread
# checks on (-tags cryodebug).
test: deps
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -tags cryodebug ./internal/ptrace

# fuzz runs each fuzz target for FUZZTIME (default 2m). Minimizing a new
# 8 KiB vDSO input can take the whole default minute, so it is cut short.
FUZZTIME ?= 2m
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./internal/vdso
	$(GO) test -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./internal/image
	$(GO) test -run '^$$' -fuzz '^FuzzGNUBuildID$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./internal/files
	$(GO) test -run '^$$' -fuzz '^FuzzDatagramSender$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./internal/files
	$(GO) test -run '^$$' -fuzz '^FuzzPacketExtras$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./internal/files
	$(GO) test -run '^$$' -fuzz '^FuzzSeccompProgram$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./internal/kernel
	$(GO) test -run '^$$' -fuzz '^FuzzParseInetDiag$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./internal/kernel
	$(GO) test -run '^$$' -fuzz '^FuzzUnixDiag$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./internal/kernel
	$(GO) test -run '^$$' -fuzz '^FuzzParsePacketDiag$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./internal/kernel
	$(GO) test -run '^$$' -fuzz '^FuzzNlAcks$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./internal/kernel
	$(GO) test -run '^$$' -fuzz '^FuzzNlAttrs$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./internal/kernel
	$(GO) test -run '^$$' -fuzz '^FuzzNftTables$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./internal/kernel
	for f in FuzzParseMaps FuzzParseSmaps FuzzParseStatus FuzzParseStat FuzzParseLimits FuzzParseFdinfo FuzzParseAuxv FuzzPageRuns FuzzParseTimensOffsets FuzzParseLocks FuzzParseOOMScoreAdj FuzzParseLoginUID FuzzInotifyWatches FuzzFanotify FuzzParseMountinfo FuzzParsePosixTimers FuzzTimerfd FuzzSignalfd FuzzParseSysvShm; do \
		$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./internal/proc || exit 1; \
	done

# fixtures captures the vDSO of this kernel and of Debian's 5.10, 6.1 and
# 6.12 kernels (booted under qemu) into internal/vdso/testdata.
fixtures:
	$(GO) run ./test/qemu/capture-vdso

# matrix runs only the cross-kernel matrix (every ordered pair of Linux 5.10,
# 6.1, 6.12 and this kernel, both subjects, and the chain; make test runs it
# too) and writes test/crosskernel/matrix.md.
matrix: deps
	$(GO) test -count=1 -v -run '^TestCrossKernel$$' ./test/crosskernel -matrix-md=matrix.md

# bench measures dump, restore and a proxied vDSO call against same-run
# baselines.
# bench runs the benchmarks, then prints the table of figures beside CRIU's
# (CRIU=path to a CRIU binary, see the README) or the same-run baselines.
bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 3x ./test/bench
	CRYO_BENCH_TABLE=1 CRIU="$(CRIU)" $(GO) test -count=1 -v -run '^TestTable$$' -timeout 30m ./test/bench

clean:
	rm -rf bin
