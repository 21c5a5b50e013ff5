"""Cost of one decode step of the generation engine, by rows in the batch: what bounds decoding.

    python bench/bench_decode_step.py --model-dir results/model/base [--liger] [--json-out F]

The engine's own decoder (`lora_tradeoff.inference.engine._Decoder`, cascade attention over
group prefixes, CUDA-graph replay on a GPU) on synthetic ids: ``--groups`` shared prefixes of
``--prefix`` tokens, the rows split evenly among them, and ``--capacity`` own slots per row, of
which all but ``--new`` are filled. For each row count it
prints milliseconds per replayed step and, from one eager step under torch.profiler, the number of
device kernels a step launches and their summed device time. ``--liger`` first applies Liger's
fused RMSNorm, rotary embedding and SwiGLU kernels to the model (``pip install liger-kernel``;
Qwen2/Llama-family models), to measure what fewer kernels per step buy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from bench.bench_generation import report_device  # noqa: E402
from lora_tradeoff.files import write_json  # noqa: E402
from lora_tradeoff.inference.cascade import cascade_attention_for  # noqa: E402
from lora_tradeoff.inference.engine import _batch_cache, _Decoder, _encode_prefixes  # noqa: E402
from lora_tradeoff.model.loading import apply_liger_kernels, load_model_and_tokenizer  # noqa: E402


def step_figures(model: object, prefixes: object, rows: int, args: argparse.Namespace) -> dict:
    """ms per step (replayed on CUDA, eager on CPU) and kernels per eager step, for ``rows`` rows."""
    from torch.profiler import ProfilerActivity, profile

    device = model.device
    filled = args.capacity - args.new
    cache = _batch_cache(model, rows, args.capacity)
    mask = torch.ones(rows, args.capacity, dtype=torch.long, device=device)
    tokens = torch.randint(100, 1000, (rows,), device=device)
    positions = torch.full((rows,), args.prefix + filled, device=device)
    groups = [row * len(prefixes.lengths) // rows for row in range(rows)] if prefixes else [0] * rows
    decoder = _Decoder.after_prefill(
        model, cache, tokens, mask, positions, filled, prefixes, groups, use_graph=device.type == "cuda"
    )
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        decoder._step()  # one eager step, its kernels counted
        if cuda:
            torch.cuda.synchronize()
    kernels = [event for event in prof.events() if event.device_type == torch.autograd.DeviceType.CUDA]
    for _ in range(3):  # warm-up, capture, first replay
        decoder.advance()
    steps = min(args.steps, args.new - 6)
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        decoder.advance()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "rows": rows,
        "ms_per_step": round(1000 * seconds / steps, 3),
        "steps_timed": steps,
        "graph": decoder.graph is not None,
        "kernels_per_eager_step": len(kernels),
        "kernel_ms_per_eager_step": round(sum(event.time_range.elapsed_us() for event in kernels) / 1000, 3),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rows", default="1,16,64,128,256", help="comma-separated row counts")
    parser.add_argument(
        "--prefix", type=int, default=780, help="tokens per group prefix (Spider dev 3-shot: ~480 common + a schema)"
    )
    parser.add_argument("--groups", type=int, default=1, help="group prefixes (Spider dev: 20 databases)")
    parser.add_argument(
        "--capacity", type=int, default=192, help="own slots per row (longest question part + new tokens)"
    )
    parser.add_argument("--new", type=int, default=128, help="slots left free for decoding")
    parser.add_argument("--steps", type=int, default=100, help="replayed steps timed per row count")
    parser.add_argument("--liger", action="store_true", help="apply Liger's fused kernels first")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    rows = [int(text) for text in args.rows.split(",")]
    if min(rows) < 1 or args.new < 8 or args.capacity <= args.new or args.prefix < 0 or args.groups < 1:
        parser.error("rows >= 1, new >= 8, capacity > new, prefix >= 0 and groups >= 1 are needed")
    model, _ = load_model_and_tokenizer(args.model_dir, device=args.device)
    if args.liger:
        apply_liger_kernels(model)
    figures = []
    with torch.inference_mode(), cascade_attention_for(model):
        group_prefixes = [torch.randint(100, 1000, (args.prefix,)).tolist() for _ in range(args.groups)]
        prefixes = _encode_prefixes(model, group_prefixes) if args.prefix else None
        for count in rows:
            figures.append(step_figures(model, prefixes, count, args))
            print(json.dumps(figures[-1]), flush=True)
    result = {
        "device": report_device(model.device),
        "dtype": str(model.dtype),
        "torch": torch.__version__,
        "liger": args.liger,
        "prefix": args.prefix,
        "groups": args.groups,
        "capacity": args.capacity,
        "steps": figures,
    }
    print("BENCH_RESULT " + json.dumps(result))
    if args.json_out:
        write_json(args.json_out, result)
    return result


if __name__ == "__main__":
    main()
