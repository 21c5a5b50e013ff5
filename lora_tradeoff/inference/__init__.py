"""One inference interface for SQL generation and MMLU scoring, with two backends behind it.

* `base.LM`: the interface, after lm-evaluation-harness's ``lm_eval.api.model.LM``:
  greedy ``generate_until`` with a stop rule, and continuation ``loglikelihood``.
* `engine.BatchedEngine`: ours (prompts grouped by shared prefix, each prefix's
  keys/values computed and attended once through `cascade` attention, length
  batching, CUDA-graph decoding); the workflow runs it.
* `hf.HFReference`: plain ``model.generate`` and one forward per request, the
  reference the engine is tested and benchmarked against.
"""
