# Two commands for a fresh machine:  `make demo`  and  `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TS_DIR := clients/typescript
TS_STAMP := $(TS_DIR)/node_modules/.installed
SDK021 := .venv-sdk021
SDK021_STAMP := $(SDK021)/.installed
# buf breaking compares against this git ref (e.g. AGAINST='.git#tag=v0.1.0').
AGAINST ?= .git\#branch=main

.PHONY: help install demo test test-fast proto proto-deps proto-check proto-lint proto-breaking lint ts-deps go-deps sdk021-venv system-deps bench-deps clean

help: ## list the targets, one line each
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) \
	  | awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv with the gateway, the local runtime, the dev tools and tracing

# Debian packages the suite needs, installed only when missing (CI machines start bare).
# redis-server and haproxy: the fleet tests (tests/fleet/) run replicas sharing a real Redis
# behind a real load balancer.
system-deps: ## install nodejs, npm, redis-server and haproxy (Debian) when missing
	@missing=$$(command -v node >/dev/null && command -v npm >/dev/null || echo nodejs npm; \
	  command -v redis-server >/dev/null || echo redis-server; \
	  command -v haproxy >/dev/null || echo haproxy); \
	if [ -n "$$(echo $$missing)" ]; then echo "installing $$(echo $$missing) (Debian)"; \
	  apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; fi

# h2load (nghttp2's C load generator) for the benchmarks' load cases; optional.
bench-deps: $(STAMP) ## install h2load (Debian) for the benchmarks' load cases
	@command -v h2load >/dev/null || { \
	  echo "installing nghttp2-client (Debian) for h2load"; \
	  apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null; }

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[server,local,otel,dev]'
	@# Type checkers do not run setuptools' import hook: a .pth with the source roots lets
	@# `mypy --strict` on a program using runtime_gateway find the package and its types.
	$(PY) -c "import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()['purelib'], \
	  'runtime_gateway_sources.pth').write_text('$(CURDIR)/clients/python\n$(CURDIR)/server\n')"
	touch $(STAMP)

# The TypeScript client's toolchain (ts-proto, tsc) and runtime (@grpc/grpc-js), from its lockfile.
$(TS_STAMP): $(TS_DIR)/package.json $(TS_DIR)/package-lock.json | system-deps
	npm ci --prefix $(TS_DIR) --no-audit --no-fund --loglevel=error
	touch $(TS_STAMP)

ts-deps: $(TS_STAMP) ## install the TypeScript client's toolchain (npm ci)

# Go, the Go protoc plugins and grpc-go from Debian, installed only when missing. Go modules
# cannot be downloaded here: the Go client builds in GOPATH mode against /usr/share/gocode.
# golang-github-golang-protobuf-1-5-dev: without it the protobuf 1.3 runtime panics.
GO_DEBS := golang-go protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev \
	golang-google-genproto-dev golang-github-golang-protobuf-1-5-dev
go-deps: ## install Go and grpc-go (Debian) when missing
	@missing=$$(for p in $(GO_DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	  | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing $$missing (Debian)"; \
	  apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; fi

# Everything tools/genproto.py runs besides grpcio-tools' protoc.
proto-deps: $(STAMP) ts-deps go-deps ## everything `make proto` needs

# The 0.21 SDK (qiskit<1.1) cannot share a virtualenv with the newest one.
$(SDK021_STAMP): tests/compat/sdk021/requirements.txt
	$(PYTHON) -m venv $(SDK021)
	$(SDK021)/bin/python -m pip install -q --upgrade pip
	$(SDK021)/bin/python -m pip install -q -r tests/compat/sdk021/requirements.txt
	touch $(SDK021_STAMP)

sdk021-venv: $(SDK021_STAMP) ## a separate venv with qiskit-ibm-runtime 0.21 (compat tests)

# Regenerate every generated file from protos/: the Python stubs, the documented descriptor
# set reflection serves, the Go client and the TypeScript client (see tools/genproto.py).
proto: proto-deps ## regenerate the Python, Go and TypeScript code from protos/
	$(PY) tools/genproto.py

proto-check: proto-deps ## fail when the generated code is not up to date
	$(PY) tools/genproto.py --check

proto-lint: $(STAMP) ## buf lint and buf format on protos/
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code

proto-breaking: $(STAMP) ## buf breaking against AGAINST (default: main)
	$(BIN)/buf breaking --against '$(AGAINST)'

lint: $(STAMP) ## ruff, mypy and hadolint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

demo: $(STAMP) ## start a gateway and run jobs through it (examples/demo.py)
	$(PY) examples/demo.py

test: $(STAMP) system-deps ts-deps go-deps sdk021-venv proto-check proto-lint lint ## the whole suite and every check
	$(PY) -m pytest

# The suite without the installs and static checks (for a quick loop).
test-fast: ## the suite alone, stopping at the first failure
	$(PY) -m pytest -x -q

clean: ## remove the venvs, node_modules and caches
	rm -rf $(VENV) $(SDK021) $(TS_DIR)/node_modules $(TS_DIR)/dist .pytest_cache .ruff_cache .mypy_cache
