"""The first steps of every rule that runs a model (fine_tune, generate_sql, score_mmlu), in one place.

Its logger, the card it runs on (on a machine with several GPUs, its own: :mod:`lora_tradeoff.gpus`),
its CPU threads and, where asked, the T4 rehearsal (:func:`lora_tradeoff.model.precision.rehearse_t4`),
in the order they must come: the card is claimed and the rehearsal set before CUDA starts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lora_tradeoff.gpus import claim_gpu
from lora_tradeoff.logs import rule_logger
from lora_tradeoff.model.loading import load_from_manifest
from lora_tradeoff.model.precision import rehearse_t4


def start_model_job(log_path: str | Path, name: str, threads: int, rehearse: bool = False) -> logging.Logger:
    """Set up this process for a model job and return its logger (see :func:`lora_tradeoff.logs.rule_logger`).

    ``name`` is the job's name in its log lines (``generate_sql[r16_qv]``), ``threads`` the rule's
    ``threads:`` (torch's CPU threads), ``rehearse`` the workflow's ``rehearse_t4``.
    """
    import torch

    log = rule_logger(log_path, name)
    if (gpu := claim_gpu()) is not None:
        log.info("on GPU %s", gpu)
    torch.set_num_threads(threads)
    if rehearse_t4(rehearse):
        log.info("T4 rehearsal: capability 7.5, no flash/cuDNN attention, 15 GiB cap")
    return log


def start_evaluation_job(job: Any, rule: str) -> tuple[logging.Logger, Any, Any]:
    """:func:`start_model_job`, then the model an evaluation rule scores: ``(logger, model, tokenizer)``.

    ``job`` is the rule script's ``snakemake`` object: its ``log``, ``threads``, ``wildcards.model``,
    ``input.model`` (the base model's manifest), ``input.weights`` (the fine-tuned weights, an
    adapter or a full model folder; empty for the base model) and ``params.quantization``,
    ``params.dtype`` and ``params.rehearse_t4``.
    """
    log = start_model_job(job.log[0], f"{rule}[{job.wildcards.model}]", job.threads, job.params.rehearse_t4)
    weights = job.input.weights[0] if job.input.weights else None
    model, tokenizer = load_from_manifest(
        Path(job.input.model),
        None if weights is None else Path(weights),
        quantization=job.params.quantization,
        dtype=job.params.dtype,
    )
    log.info(
        "model on %s in %s (dtype: %s), fine-tuned weights %s", model.device, model.dtype, job.params.dtype, weights
    )
    return log, model, tokenizer
