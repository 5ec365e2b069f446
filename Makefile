# colocd developer entry points. A newcomer types `make demo` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
STAMP  := $(VENV)/.installed
BIN    := $(VENV)/bin

.PHONY: install system-deps image demo test test-host test-vm lint bench crd gpu-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,demo,vm]'
	touch $@

system-deps:
	scripts/install-system-deps.sh

# The OCI image, built here with no daemon and no registry (mmdebstrap + umoci; needs root):
# prints its tag and size, and writes the SBOM (dpkg.txt, pip-freeze.txt) next to it in
# build/image/current/. Cached on a hash of its inputs: a warm run takes about a second.
image: install system-deps
	scripts/build-image.sh

# Colocation on this machine: online alone, + batch under kubelet's defaults, + batch under
# the real agent; a table, a verdict and colocd-demo.png (needs root; about a minute).
demo: install
	$(BIN)/colocd demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# Host suite (real cgroup v1, network namespaces, kmock, Prometheus, and the image: built by
# tests/cgroups/test_image_smoke.py through make image's script, cached, run with runc);
# pytest's "no tests" (exit 5) is a failure here, never a silent pass.
test-host: install system-deps
	$(BIN)/pytest -q -p no:cacheprovider; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The cgroup v2 part of the suite (pytest -m "cgroup_v2 or in_vm") in one throw-away VM booting the
# stock Debian kernel (virtme-ng; QEMU emulation where KVM cannot boot it, ~18x slower).
# Skips with a clear line when qemu, a kernel with 9p or virtme-ng is missing.
test-vm: install system-deps
	tests/vm/run.sh

test: lint test-host test-vm

# Every benchmarks/bench_*.py; each prints its figures and writes benchmarks/results/*.json.
bench: install
	@set -e; for f in benchmarks/bench_*.py; do \
	  m=$$(basename $$f .py); echo "== $$m"; $(BIN)/python -m benchmarks.$$m; done

# On a machine with an NVIDIA GPU: list the GPUs, keep GPU 0 busy from a cgroup of its own
# (CUDA driver API through ctypes: no toolkit installed), map the process to that cgroup with
# the agent's code, and show utilisation drop while frozen and recover when thawed (about
# 20 s). Without a GPU it says so in one line and exits 0.
gpu-check: install
	$(BIN)/python -m lab.gpu_check

# deploy/crd.yaml is generated from agent/policy/model.py (a test checks it is current).
crd: install
	$(BIN)/colocd policy crd > deploy/crd.yaml

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info
