"""Does this GPU's SDPA backward return NaN gradients with a padding mask? (CUDA only; no model needed.)

PyTorch's cuDNN attention backward (the default SDPA backend on H100/H200 since torch 2.11) returns
NaN in grad_q when an explicit ``attn_mask`` is passed, the sequence length is 64 more than a
multiple of 128 and a query row's log-sum-exp is below ln(FLT_MAX) ~ -88.7 (pytorch/pytorch#196678;
hit through Qwen2.5's "massive activation" heads in huggingface/trl#7181). Padded training batches
always pass a mask, so one batch of such a length poisons the adapter. The workflow's training
therefore turns the cuDNN backend off (lora_tradeoff.training.run.avoid_cudnn_attention_backward).

This script runs the reduced case from those reports at several lengths, with the cuDNN backend
on and off, and prints the count of non-finite values in grad_q:

    python bench/check_cudnn_sdpa_nan.py
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def nonfinite_grad_q(length: int, head_dim: int = 64) -> int:
    """Non-finite entries of grad_q for the reduced case: every attention logit about -120."""
    torch.manual_seed(0)
    shape = (1, 1, length, head_dim)
    q = torch.randn(shape, device="cuda", dtype=torch.bfloat16) * 0.1
    k = torch.randn(shape, device="cuda", dtype=torch.bfloat16) * 0.1
    v = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    q[..., 0], k[..., 0] = 1.0, -120 * math.sqrt(head_dim)
    for tensor in (q, k, v):
        tensor.requires_grad_()
    mask = torch.ones(length, length, dtype=torch.bool, device="cuda").tril()[None, None]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out.backward(torch.randn_like(out))
    return int((~torch.isfinite(q.grad)).sum().item())


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, cuDNN {torch.backends.cudnn.version()}")
    print("length  length%128  cudnn_on  cudnn_off")
    for length in (640, 704, 768, 832, 1088, 1152):
        torch.backends.cuda.enable_cudnn_sdp(True)
        on = nonfinite_grad_q(length)
        torch.backends.cuda.enable_cudnn_sdp(False)
        off = nonfinite_grad_q(length)
        print(f"{length:6d}  {length % 128:10d}  {on:8d}  {off:9d}")


if __name__ == "__main__":
    main()
