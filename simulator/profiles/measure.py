"""Measure a profile on a CUDA GPU, in the format of ../shared/gpu-profiles.

Two engines: ``eager`` (Hugging Face ``transformers``, sdpa attention,
``DynamicCache``: the method of the shared profiles) and ``vllm`` (paged
attention and CUDA graphs: what a vLLM server runs; written as engine
``paged``). Each profile records the GPU and the versions of the software that
ran. torch, transformers and vllm are imported only here, when a measurement
runs.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from simulator.profiles.shapes import ModelShape, load_shape

#: ``--engine`` choices, and the engine mode each writes in the profile.
ENGINE_MODES = {"eager": "eager", "vllm": "paged"}
PACKAGES = ("torch", "transformers", "vllm", "flash-attn", "flashinfer-python")


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


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def resolve_engines(choice: str) -> tuple[str, ...]:
    """``--engine``: ``auto`` is eager plus vllm when vllm is installed; asking for vllm without it is an error."""
    choice = choice.strip().lower()
    if choice == "auto":
        return ("eager", "vllm") if vllm_available() else ("eager",)
    wanted = {"both": ("eager", "vllm"), "eager": ("eager",), "vllm": ("vllm",)}.get(choice)
    if wanted is None:
        raise ValueError(f"--engine must be eager, vllm, both or auto, got {choice!r}")
    if "vllm" in wanted and not vllm_available():
        raise ValueError("--engine vllm needs vllm installed (pip install vllm); use --engine eager")
    return wanted


def software_versions() -> dict[str, str]:
    """Python, the platform, and the installed versions of the packages a measurement depends on."""
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _gpu_versions(torch) -> dict[str, str]:  # pragma: no cover - needs a GPU
    found = {"cuda": str(torch.version.cuda), "cudnn": str(torch.backends.cudnn.version())}
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
        if driver.returncode == 0 and driver.stdout.strip():
            found["driver"] = driver.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return found


def require_cuda(engines: tuple[str, ...]):
    """torch with a CUDA device, and the packages of ``engines``; one clear error otherwise."""
    try:
        import torch
    except ImportError as exc:
        raise RuntimeError(f"kis profile measure needs torch with CUDA: {exc}") from exc
    if "eager" in engines and importlib.util.find_spec("transformers") is None:
        raise RuntimeError("kis profile measure --engine eager needs transformers (pip install transformers)")
    if not torch.cuda.is_available():
        raise RuntimeError("kis profile measure needs a CUDA GPU; none is available here")
    return torch


def output_paths(out: Path, engines: tuple[str, ...]) -> dict[str, Path]:
    """One profile per engine: ``out`` itself for one engine, ``<stem>_<engine>.json`` for several."""
    if len(engines) == 1:
        return {engines[0]: out}
    return {e: out.with_name(f"{out.stem}_{e}{out.suffix or '.json'}") for e in engines}


def profile_document(shape: ModelShape, gpu: str, engine: str, prefill: list[dict], decode: list[dict], software: dict[str, str]) -> dict:
    """The profile JSON (the format :func:`simulator.profiles.measured.load_profile` reads)."""
    fields = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size")
    return {"model": shape.name, "shape": {k: getattr(shape, k) for k in fields}, "params": shape.params, "gpu": gpu,
            "engine": ENGINE_MODES[engine], "software": software, "torch": software.get("torch", ""), "prefill": prefill, "decode": decode}


def measure(model: str, grid: MeasureGrid, out: Path, engines: tuple[str, ...], repeats: int = 5) -> list[Path]:
    """Measure ``model`` with each engine; the profiles written."""
    shape = load_shape(model)
    torch = require_cuda(engines)
    software = software_versions() | _gpu_versions(torch)  # pragma: no cover - below needs a GPU
    paths = []
    for engine, path in output_paths(out, engines).items():  # pragma: no cover
        runner = _measure_eager if engine == "eager" else _measure_vllm
        prefill, decode = runner(torch, shape, grid, repeats)
        document = profile_document(shape, torch.cuda.get_device_name(), engine, prefill, decode, software)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=1))
        paths.append(path)
    return paths


def _kernel_ms(torch, fn) -> float:  # pragma: no cover - needs a GPU
    """Sum of the CUDA kernel times of one call (PyTorch profiler)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(e.device_time_total for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA) / 1000.0


def _measure_eager(torch, shape: ModelShape, grid: MeasureGrid, repeats: int) -> tuple[list[dict], list[dict]]:  # pragma: no cover - needs a GPU
    """A randomly initialised LlamaForCausalLM of the shape in bf16, timed with CUDA events and the profiler."""
    from transformers import LlamaConfig, LlamaForCausalLM

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
        return statistics.median(walls), _kernel_ms(torch, fn)

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
    return prefill, decode


#: Decode steps timed per vLLM decode point (difference of two generation lengths).
VLLM_DECODE_STEPS = 16


def _measure_vllm(torch, shape: ModelShape, grid: MeasureGrid, repeats: int) -> tuple[list[dict], list[dict]]:  # pragma: no cover - needs a GPU
    """vLLM's offline engine with dummy weights of the shape, CUDA graphs on, prefix caching off.

    Prefill: ``batch`` prompts generating one token (one scheduler step).
    Decode: ``batch`` prompts of ``context_len`` tokens generating ``1 + k`` and ``1``
    tokens; the difference over ``k`` is one decode step. The engine core
    runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so the PyTorch
    profiler sees its kernels.
    """
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    longest = max(max(grid.prompt_lens), max(grid.context_lens)) + VLLM_DECODE_STEPS + 8
    tokens_per_step = max(max(b * n for b, n in grid.prefill_points()), max(grid.decode_batches))
    with tempfile.TemporaryDirectory() as folder:
        config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": shape.hidden_size,
                  "intermediate_size": shape.intermediate_size, "num_hidden_layers": shape.num_hidden_layers,
                  "num_attention_heads": shape.num_attention_heads, "num_key_value_heads": shape.num_key_value_heads,
                  "vocab_size": shape.vocab_size, "tie_word_embeddings": shape.tie_word_embeddings, "max_position_embeddings": max(longest, 8192),
                  "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "torch_dtype": "bfloat16", "hidden_act": "silu"}
        Path(folder, "config.json").write_text(json.dumps(config))
        llm = LLM(model=folder, load_format="dummy", dtype="bfloat16", skip_tokenizer_init=True, enable_prefix_caching=False,
                  max_model_len=longest, max_num_seqs=max(max(grid.decode_batches), max(grid.prefill_batches)),
                  max_num_batched_tokens=max(tokens_per_step, longest), gpu_memory_utilization=0.9)
        generator = torch.Generator().manual_seed(0)

        def prompts(batch: int, length: int) -> list:
            return [TokensPrompt(prompt_token_ids=torch.randint(0, shape.vocab_size, (length,), generator=generator).tolist()) for _ in range(batch)]

        def run(batch_prompts: list, new_tokens: int) -> None:
            params = SamplingParams(max_tokens=new_tokens, min_tokens=new_tokens, ignore_eos=True, temperature=0.0, detokenize=False)
            llm.generate(batch_prompts, params, use_tqdm=False)

        def wall_ms(batch_prompts: list, new_tokens: int) -> float:
            run(batch_prompts, new_tokens)  # warm-up
            times = []
            for _ in range(repeats):
                torch.cuda.synchronize()
                start = time.perf_counter()
                run(batch_prompts, new_tokens)
                torch.cuda.synchronize()
                times.append((time.perf_counter() - start) * 1000.0)
            return statistics.median(times)

        prefill, decode = [], []
        for batch, length in grid.prefill_points():
            batch_prompts = prompts(batch, length)
            prefill.append({"batch": batch, "prompt_len": length, "wall_ms": wall_ms(batch_prompts, 1),
                            "kernel_ms": _kernel_ms(torch, lambda: run(batch_prompts, 1))})
        k = VLLM_DECODE_STEPS
        for batch, context in grid.decode_points():
            batch_prompts = prompts(batch, context)
            wall = (wall_ms(batch_prompts, 1 + k) - wall_ms(batch_prompts, 1)) / k
            kernel = (_kernel_ms(torch, lambda: run(batch_prompts, 1 + k)) - _kernel_ms(torch, lambda: run(batch_prompts, 1))) / k
            decode.append({"batch": batch, "context_len": context, "wall_ms": wall, "kernel_ms": kernel})
    return prefill, decode
