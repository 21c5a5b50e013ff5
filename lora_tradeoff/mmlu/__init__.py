"""MMLU 4-shot, the cost side: acquiring and normalizing the data (`data`), choosing the
questions every model answers (`suite`), and the lm-evaluation-harness-style prompts and
log-likelihood (or generate-mode) scoring of one model (`scoring`). The statistics that
compare models live in :mod:`lora_tradeoff.stats`.
"""
