#!/bin/sh
# Snakemake's post-deploy script of every env here (envs/<env>.post-deploy.sh links to this file):
# run once, inside the conda env just created, it installs this repository's packages
# (lora_tradeoff, custom_metrics) into it. Editable, because Snakemake does not rebuild an env
# when the code changes: the env must run the checkout's current code. Snakemake runs a copy of
# this file from .snakemake/conda/, so the checkout is named by LORA_TRADEOFF_SOURCE, which
# rules/common.smk sets to the workflow's folder. An env shared between checkouts
# (--conda-prefix) runs the code of the checkout that created it.
set -eu
: "${LORA_TRADEOFF_SOURCE:?is not set: this script is run by snakemake --use-conda, which sets it (rules/common.smk)}"
python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation --editable "$LORA_TRADEOFF_SOURCE"
# A folder that holds another Python project installs without complaint: fail here, at env creation,
# unless the env now imports both packages from that checkout (lora_tradeoff/installation.py).
python -P -c 'import pathlib, sys; from lora_tradeoff.installation import import_problem as p
sys.exit(p(pathlib.Path(sys.argv[1]), sys.executable, pathlib.Path.cwd()))' "$LORA_TRADEOFF_SOURCE"
