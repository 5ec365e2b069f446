# colocd developer entry points. A newcomer types `make demo` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
STAMP  := $(VENV)/.installed
BIN    := $(VENV)/bin

.PHONY: install system-deps demo test test-host test-vm lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,demo,vm]'
	touch $@

system-deps:
	scripts/install-system-deps.sh

# Until `colocd demo` lands: classify the shipped example pods (real work, no cluster).
demo: install
	$(BIN)/colocd classify examples/

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# Host suite (real cgroup v1, network namespaces, kmock, Prometheus); pytest's "no tests"
# (exit 5) is a failure here, never a silent pass.
test-host: install system-deps
	$(BIN)/pytest -q -p no:cacheprovider; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests" >&2; exit 1; fi; exit $$rc

test: lint test-host

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info
