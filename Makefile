# Two commands do everything: `make demo` (whole workflow, offline default) and
# `make test` (lint + tests). Both create .venv from requirements.txt first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-requirements
CORES ?= 2
export DEEPEVAL_TELEMETRY_OPT_OUT := YES
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv demo test lint report dag clean

# The package itself goes in editable (no copy: the code reads schemas/ beside it), built
# with the pinned setuptools. The rule scripts import it from here (without --use-conda; the
# Snakefile checks that they find this checkout) or from each conda env (envs/install-package.sh).
$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation --editable .
	cp requirements.txt $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/snakemake --cores $(CORES)

report: venv
	$(BIN)/snakemake --cores $(CORES) --report results/report.html

dag: venv
	$(BIN)/snakemake --dag | tee results/dag.dot

lint: venv
	$(BIN)/snakefmt --check Snakefile rules/
	$(BIN)/snakemake --lint
	$(BIN)/ruff check .
	$(BIN)/python -m lora_tradeoff.config_reference --check config/README.md

test: venv lint
	$(BIN)/pytest -q --durations=15

clean:
	rm -rf results/* .snakemake
