# vault-kms: the README's two commands are `make demo` and `make test`.
# Every dependency comes from Debian bookworm's packages and is installed here, nowhere else.

BUILD      ?= build
SAN_BUILD  ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

DEB_PACKAGES := build-essential cmake pkg-config ca-certificates openssl curl python3 \
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev \
  libcurl4-openssl-dev libssl-dev libjsoncpp-dev libseccomp-dev libcap-ng-dev \
  libgoogle-glog-dev prometheus-cpp-dev libmicrohttpd-dev libgtest-dev libgmock-dev libcpp-httplib-dev \
  clang clang-format libclang-rt-14-dev python3-yaml prometheus

# What `make image`, `make deb` and their tests use besides the build: gzip and dpkg (the image's
# layer and SBOM), umoci and skopeo (validate the image, unpack it), dpkg-dev (dpkg-shlibdeps),
# help2man (the man page), lintian, systemd (systemd-analyze verify), adduser (postinst).
PACKAGING_PACKAGES := gzip dpkg dpkg-dev umoci skopeo lintian help2man systemd adduser

# Debian's interpreter (a python3 earlier in PATH may lack python3-yaml).
PYTHON3 ?= /usr/bin/python3
# File times in the image: the commit's, unless the caller sets it (a release's time).
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
export SOURCE_DATE_EPOCH

.PHONY: all deps deps-packaging build test test-sanitize fuzz fuzz-build fuzz-smoke demo audit \
  clean format format-check soak bench image deb

all: build

# Idempotent: installs only what is missing, runs `apt-get update` first when it must install.
# `prometheus` is in DEB_PACKAGES for promtool (the tests validate /metrics and the alerting
# rules); on a host with systemd the Prometheus server it would start is stopped and disabled
# when this target installed it.
# $(1): the packages.
define install_debs
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; exit 0; fi; \
	echo "deps: installing:$$missing"; \
	if [ "$$(id -u)" -ne 0 ]; then \
	  echo "deps: not root; run as root: apt-get update && apt-get install -y$$missing" >&2; exit 1; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update && apt-get install -y --no-install-recommends $$missing || exit 1; \
	case " $$missing " in *" prometheus "*) \
	  if [ -d /run/systemd/system ]; then \
	    echo "deps: prometheus is installed for promtool only; stopping the server it started"; \
	    systemctl disable --now prometheus.service || true; fi;; \
	esac
endef

deps:
	$(call install_debs,$(DEB_PACKAGES))

deps-packaging:
	$(call install_debs,$(PACKAGING_PACKAGES))

$(BUILD)/CMakeCache.txt: CMakeLists.txt
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)

# The Package.* tests (tests/package) build the image and the .deb themselves, as `make image`
# and `make deb` do, and check them.
test: build deps-packaging
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600
	$(MAKE) --no-print-directory fuzz-smoke

# Every suite again with AddressSanitizer + UndefinedBehaviorSanitizer (and LeakSanitizer in
# the unconfined test processes), confinement on. .ci/run runs it after `make test`.
test-sanitize: deps
	cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVKMS_SANITIZE=ON $(CMAKE_ARGS)
	cmake --build $(SAN_BUILD) -j $(JOBS)
	cd $(SAN_BUILD) && UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS) --timeout 600

# libFuzzer targets (tests/fuzz/), in their own clang build: every library instrumented with
# -fsanitize=fuzzer-no-link,address,undefined. Each target runs in turn on its checked-in seeds
# (tests/fuzz/corpus/<target>, read-only) plus a working corpus in $(FUZZ_BUILD)/corpus; a
# crash leaves its input in $(FUZZ_BUILD)/artifacts/<target>/ and fails the run once all ran.
FUZZ_TARGETS := fuzz_ipc_decode fuzz_vault_ciphertext fuzz_vault_json fuzz_vault_auth fuzz_flags \
  fuzz_annotations_keyid fuzz_log_relay

fuzz-build: deps
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DVKMS_FUZZ=ON $(CMAKE_ARGS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(FUZZ_TARGETS)

# $(1): seconds per target.
define fuzz_run
	@failed=""; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/artifacts/$$t; \
	  extra=""; [ $$t = fuzz_ipc_decode ] && extra="-max_len=70000"; \
	  UBSAN_OPTIONS=print_stacktrace=1 $(FUZZ_BUILD)/$$t -max_total_time=$(1) $$extra \
	    -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t/ \
	    $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t >$(FUZZ_BUILD)/$$t.log 2>&1; \
	  rc=$$?; \
	  if [ $$rc -eq 0 ]; then \
	    echo "$$t: $$(grep -E '^#[0-9]+[[:space:]]+DONE' $(FUZZ_BUILD)/$$t.log | tail -n 1)"; \
	  else \
	    echo "$$t: FAILED (exit $$rc), log $(FUZZ_BUILD)/$$t.log:"; \
	    grep -E 'invariant violated|runtime error|ERROR:|what\(\)|Test unit written' \
	      $(FUZZ_BUILD)/$$t.log | head -n 8; \
	    failed="$$failed $$t"; \
	  fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: crashes in:$$failed" >&2; exit 1; fi
endef

fuzz: fuzz-build
	$(call fuzz_run,$(FUZZ_SECONDS))

# ~5 s per target: part of `make test`.
fuzz-smoke: fuzz-build
	$(call fuzz_run,5)

# build/vault-kms-image.tar: an OCI image archive (no registry, no daemon), reproducible from
# the commit; its SBOM beside it. Prints the reference and digest (README, "Install").
image: build deps-packaging
	$(PYTHON3) packaging/image/build-image.py --build-dir $(BUILD)

# build/vault-kms_<version>_<arch>.deb (CPack's DEB generator; Depends from dpkg-shlibdeps).
deb: build deps-packaging
	cmake --build $(BUILD) --target vkms-deb-files
	cd $(BUILD) && cpack -G DEB

demo: build
	./tests/demo.sh $(BUILD)

# Issue 6's soak run (not part of `make test`/CI): 1,000,000 mixed calls at 48 concurrent with
# Vault faults every 30 s and the RSS of both processes sampled; e.g. SOAK_ARGS="--calls 200000".
SOAK_ARGS ?=
soak: build
	$(BUILD)/vault-kms-soak $(SOAK_ARGS)

# Issue 7's benchmark (not part of `make test`/CI): vault-kms against a direct libcurl client to
# the same simulator in the same run; prints one table, writes $(BUILD)/bench/results.json and
# exits non-zero when a target is missed. BENCH_ARGS: e.g. --concurrency 1,8,64 --seconds 10.
BENCH_ARGS ?=
bench: build
	$(BUILD)/vault-kms-bench --out $(BUILD)/bench/results.json $(BENCH_ARGS)

# What an auditor reads first: IPC table, seccomp allow-lists, Landlock rules, uids and caps.
audit: build
	$(BUILD)/vault-kms-audit $(AUDIT_FLAGS)

format:
	git ls-files '*.cc' '*.h' | xargs clang-format -i

format-check:
	git ls-files '*.cc' '*.h' | xargs clang-format --dry-run --Werror

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(FUZZ_BUILD)
