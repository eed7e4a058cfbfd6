# vault-kms: the README's two commands are `make demo` and `make test`.
# Every dependency comes from Debian bookworm's packages and is installed here, nowhere else.

BUILD      ?= build
SAN_BUILD  ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

DEB_PACKAGES := build-essential cmake pkg-config ca-certificates openssl curl python3 \
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev \
  libcurl4-openssl-dev libssl-dev libjsoncpp-dev libseccomp-dev libcap-ng-dev \
  libgoogle-glog-dev prometheus-cpp-dev libgtest-dev libgmock-dev libcpp-httplib-dev \
  clang clang-format libclang-rt-14-dev python3-yaml

.PHONY: all deps build test test-sanitize demo audit clean format format-check

all: build

# Idempotent: installs only what is missing, runs `apt-get update` first when it must install.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; exit 0; fi; \
	echo "deps: installing:$$missing"; \
	if [ "$$(id -u)" -ne 0 ]; then \
	  echo "deps: not root; run as root: apt-get update && apt-get install -y$$missing" >&2; exit 1; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update && apt-get install -y --no-install-recommends $$missing

$(BUILD)/CMakeCache.txt: CMakeLists.txt
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600

# Every suite again with AddressSanitizer + UndefinedBehaviorSanitizer (and LeakSanitizer in
# the unconfined test processes), confinement on. .ci/run runs it after `make test`.
test-sanitize: deps
	cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVKMS_SANITIZE=ON $(CMAKE_ARGS)
	cmake --build $(SAN_BUILD) -j $(JOBS)
	cd $(SAN_BUILD) && UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS) --timeout 600

demo: build
	./tests/demo.sh $(BUILD)

# What an auditor reads first: IPC table, seccomp allow-lists, Landlock rules, uids and caps.
audit: build
	$(BUILD)/vault-kms-audit $(AUDIT_FLAGS)

format:
	git ls-files '*.cc' '*.h' | xargs clang-format -i

format-check:
	git ls-files '*.cc' '*.h' | xargs clang-format --dry-run --Werror

clean:
	rm -rf $(BUILD) $(SAN_BUILD)
