# Entry points: `make demo` and `make test`. Both install missing Debian packages first.
BUILD ?= build
SANITIZE_BUILD ?= build-sanitize
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all setup build build-sanitize demo test test-release test-sanitize bench bench-speed models fixtures check-large clean

all: build

setup:
	@bash tools/setup.sh

build: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) > $(BUILD).configure.log 2>&1 || (cat $(BUILD).configure.log; exit 1)
	@cmake --build $(BUILD) -j $(JOBS)

build-sanitize: setup
	@cmake -S . -B $(SANITIZE_BUILD) -DCMAKE_BUILD_TYPE=Debug -DDS_SANITIZE=ON $(CMAKE_FLAGS) > $(SANITIZE_BUILD).configure.log 2>&1 || (cat $(SANITIZE_BUILD).configure.log; exit 1)
	@cmake --build $(SANITIZE_BUILD) -j $(JOBS)

# The main job on the bundled defaults: the trained DAT++ nano, Fashion-MNIST, zcu102.
demo: build
	$(BUILD)/bin/deformslice compile

test-release: build
	cd $(BUILD) && ctest --output-on-failure

# AddressSanitizer and UndefinedBehaviorSanitizer over the same tests.
test-sanitize: build-sanitize
	cd $(SANITIZE_BUILD) && ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure

test: test-release test-sanitize

bench: build
	bash bench/run.sh

# The C runtime against ONNX Runtime and PyTorch (docs/benchmarks.md). Needs Node.js with
# bench/ort installed (`npm install --ignore-scripts` there) and Debian's python3-torch; the
# larger models are read from /work/exports (EXPORTS=DIR to change).
EXPORTS ?= /work/exports
bench-speed: build
	cd bench/ort && npm install --ignore-scripts --no-audit --no-fund
	/usr/bin/python3 bench/speed.py --build $(BUILD) --exports $(EXPORTS)

# Retrain the bundled model (about 30 minutes on 2 idle cores). `make fixtures` then
# regenerates the test fixtures, including the bundled model's reference logits.
models:
	@bash tools/setup.sh --models
	/usr/bin/python3 tools/train_nano.py --epochs 6 --out models/dat_pp_nano.onnx

fixtures:
	@bash tools/setup.sh --models
	/usr/bin/python3 tools/make_fixtures.py --out tests/fixtures
	/usr/bin/python3 tools/make_image_fixtures.py --out tests/fixtures/images

# Export DAT-T/S/B and DAT-T++/S++/B++ (T at 224, 225, 224x320 and 800x1333; S and B at 224)
# and compare the C runtime's float output, and ONNX Runtime's where installed, with
# PyTorch's. Exports go to EXPORTS (default /work/exports). Hours of CPU on 2 cores the first
# time; later runs reuse the exports.
EXPORTS ?= /work/exports
check-large: build
	@bash tools/setup.sh --models
	bash tools/check_large.sh --bin $(BUILD)/bin/deformslice --exports $(EXPORTS)

clean:
	rm -rf $(BUILD) $(SANITIZE_BUILD) $(BUILD).configure.log $(SANITIZE_BUILD).configure.log
