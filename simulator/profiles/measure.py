"""Measure a profile on a CUDA GPU, in the format of ../shared/gpu-profiles.

torch and transformers are imported only here, when a measurement runs.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from simulator.profiles.shapes import load_shape


@dataclass(frozen=True)
class MeasureGrid:
    prefill_batches: tuple[int, ...]
    prompt_lens: tuple[int, ...]
    decode_batches: tuple[int, ...]
    context_lens: tuple[int, ...]

    @classmethod
    def parse(cls, batches: str, prompt_lens: str, decode_batches: str, context_lens: str) -> MeasureGrid:
        def ints(text: str, what: str) -> tuple[int, ...]:
            try:
                values = tuple(int(v) for v in text.split(",") if v.strip())
            except ValueError as exc:
                raise ValueError(f"{what}: comma-separated integers expected, got {text!r}") from exc
            if not values or min(values) < 1:
                raise ValueError(f"{what}: positive integers expected, got {text!r}")
            return values

        return cls(ints(batches, "--batches"), ints(prompt_lens, "--prompt-lens"), ints(decode_batches, "--decode-batches"), ints(context_lens, "--context-lens"))

    def prefill_points(self) -> list[tuple[int, int]]:
        return [(b, length) for b in self.prefill_batches for length in self.prompt_lens]

    def decode_points(self) -> list[tuple[int, int]]:
        return [(b, c) for c in self.context_lens for b in self.decode_batches]


def _require_cuda():
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(f"kis profile measure needs torch and transformers: {exc}") from exc
    if not torch.cuda.is_available():
        raise RuntimeError("kis profile measure needs a CUDA GPU; none is available here")
    return torch


def measure_profile(model: str, grid: MeasureGrid, out: Path, repeats: int = 5) -> Path:  # pragma: no cover - needs a GPU
    """Build a randomly initialised LlamaForCausalLM of the shape in bf16 and time prefill and decode."""
    torch = _require_cuda()
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = load_shape(model)
    config = LlamaConfig(hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size, num_hidden_layers=shape.num_hidden_layers,
                         num_attention_heads=shape.num_attention_heads, num_key_value_heads=shape.num_key_value_heads,
                         vocab_size=shape.vocab_size, tie_word_embeddings=shape.tie_word_embeddings, attn_implementation="sdpa")
    net = LlamaForCausalLM(config).to(device="cuda", dtype=torch.bfloat16).eval()

    def timed(fn) -> tuple[float, float]:
        for _ in range(2):
            fn()
        walls = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            walls.append(start.elapsed_time(end))
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        kernel_us = sum(e.device_time_total for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA)
        return statistics.median(walls), kernel_us / 1000.0

    prefill, decode = [], []
    with torch.no_grad():
        for batch, length in grid.prefill_points():
            ids = torch.randint(0, shape.vocab_size, (batch, length), device="cuda")
            wall, kernel = timed(lambda: net(input_ids=ids, logits_to_keep=1))
            prefill.append({"batch": batch, "prompt_len": length, "wall_ms": wall, "kernel_ms": kernel})
        for batch, context in grid.decode_points():
            ids = torch.randint(0, shape.vocab_size, (batch, context), device="cuda")
            cache = net(input_ids=ids, use_cache=True).past_key_values
            step = torch.randint(0, shape.vocab_size, (batch, 1), device="cuda")
            wall, kernel = timed(lambda: net(input_ids=step, past_key_values=cache, use_cache=True))
            decode.append({"batch": batch, "context_len": context, "wall_ms": wall, "kernel_ms": kernel})
    data = {"model": shape.name, "shape": {k: getattr(shape, k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size")},
            "params": shape.params, "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "prefill": prefill, "decode": decode}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1))
    return out
