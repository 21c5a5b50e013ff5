"""Measure what LoRA fine-tuning buys (Spider execution accuracy) and costs (MMLU) an LLM.

All logic of the Snakemake workflow lives in this package; `workflow_scripts/`
only glue rule inputs/params to these functions.
"""
