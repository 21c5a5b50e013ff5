"""Fine-tuning: one run of LoRA, QLoRA or full fine-tuning with its checkpoints, resumption and
logs (`run`), and how the config's run list expands before Snakemake sees it: seed replicates
(`replicates`), checkpoints kept along training (`curve`) and hyperparameter sweeps (`sweeps`).
"""
