"""Serving-engine modes: what one iteration moves and launches besides the GEMMs.

The same model on the same GPU runs at different speeds under different
engines. A mode fixes the engine's structure, counted per decoder layer from
the code that runs (bf16 activations, 2 bytes; fp32 intermediates, 4 bytes):

**eager** (Hugging Face ``transformers`` 5, ``attn_implementation="sdpa"``,
``DynamicCache``, no CUDA graphs; what ``../shared/gpu-profiles`` measure):

- ``LlamaRMSNorm`` runs as separate kernels: cast to fp32 (read 2, write 4
  bytes per element), square (4+4), mean (4), scale (4+4), cast back (4+2),
  weight (2+2): 36 bytes per hidden element, twice per layer;
- rotary embedding on q and k (``q*cos + rotate_half(q)*sin``: neg, cat,
  two products, a sum): 20 bytes per element of q (hidden) and of k (KV);
- the attention output made contiguous (4), two residual adds (6 each),
  SDPA reading q and writing o (4 per hidden element), reading k and v (4 per
  KV element); SiLU (4) and the gate product (6) per intermediate element;
- totals: 112 bytes per hidden, 24 per KV and 10 per intermediate element;
  about 40 kernels per layer, 10 outside the layers (embedding, final norm,
  LM head, slicing);
- decode appends to the cache with ``torch.cat``, which reads the whole cache
  and writes it again (2 passes over the KV bytes), then SDPA reads it once.
  With no attention mask (equal lengths, as in the profiles), ``transformers``
  passes ``enable_gqa=True`` to SDPA on torch >= 2.5 (``use_gqa_in_sdpa`` in
  ``integrations/sdpa_attention.py``), so grouped KV heads are *not* expanded;
- logits are written in bf16 (2 bytes each).

**eager-repeat-kv**: the same engine when it expands grouped KV heads to the
query heads before attention (``repeat_kv``: ``attn_implementation="eager"``,
or SDPA with a padding mask): one more read of the cache, a write of
``heads / kv_heads`` times its bytes, and attention reads the expanded copy.

**paged** (vLLM with paged attention and CUDA graphs):

- fused residual-add + RMSNorm (read x and residual, write both: 8 bytes per
  hidden element, twice), rotary in place on q and k (4 per element),
  ``reshape_and_cache`` writing the new k and v into the paged cache (4 per
  KV element each), attention reading q, writing o (4 per hidden element),
  fused SiLU-and-mul (6 per intermediate element): 24 per hidden, 12 per KV
  and 6 per intermediate element; about 11 kernels per layer, 12 outside
  (embedding, norm, LM head, sampler);
- attention reads the cached KV once per step, by KV heads;
- logits: bf16 written, read, cast to fp32 and read by the sampler (12 bytes);
- the whole step replays as one CUDA graph, so there is no host launch floor.

How fast the decode attention kernel reads the cache is the engine's own
figure (``attention_memory_eff`` of a calibration made with that kernel); a
calibration made with another kernel uses the mode's prior: 0.15 for SDPA's
flash kernel at one query token (what the shared profiles imply once the
``torch.cat`` copies are counted), 0.7 for paged attention (an assumption:
decode kernels such as FlashInfer's are reported at 70-80% of HBM bandwidth
at large batch; a profile measured with ``kis profile measure --engine vllm``
replaces it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineMode:
    """The structure of one serving engine (see the module docstring for the counts).

    :param name: mode name.
    :param act_bytes_hidden: elementwise bytes per hidden element, per token and layer.
    :param act_bytes_kv: elementwise bytes per KV element (``kv_heads * head_dim``), per token and layer.
    :param act_bytes_intermediate: elementwise bytes per MLP intermediate element, per token and layer.
    :param act_bytes_token: elementwise bytes per hidden element per token outside the layers (embedding, final norm).
    :param kv_copy_passes: passes over the cached KV bytes per decode step by copy kernels (``torch.cat``: 2).
    :param expand_gqa: grouped KV heads are expanded to the query heads before attention.
    :param logit_bytes: bytes moved per logit of a sampled sequence.
    :param kernels_per_layer: kernels launched per decoder layer.
    :param kernels_per_iteration: kernels launched per iteration outside the layers.
    :param cuda_graphs: the iteration replays as a CUDA graph (no per-kernel host launch time).
    :param attention_kernel: the decode attention kernel; a calibration's ``attention_memory_eff`` carries
        over only to modes with the same kernel.
    :param attention_memory_eff: prior for the share of bandwidth that kernel reaches.
    """

    name: str
    act_bytes_hidden: float
    act_bytes_kv: float
    act_bytes_intermediate: float
    act_bytes_token: float
    kv_copy_passes: float
    expand_gqa: bool
    logit_bytes: float
    kernels_per_layer: int
    kernels_per_iteration: int
    cuda_graphs: bool
    attention_kernel: str
    attention_memory_eff: float

    def kv_passes(self, heads_per_kv_head: float) -> tuple[float, float]:
        """(passes by copy kernels, passes read by attention) over the cached KV bytes per decode step."""
        if self.expand_gqa and heads_per_kv_head > 1:
            return self.kv_copy_passes + 1.0 + heads_per_kv_head, heads_per_kv_head
        return self.kv_copy_passes, 1.0


ENGINES: dict[str, EngineMode] = {
    m.name: m
    for m in (
        EngineMode("eager", 112.0, 24.0, 10.0, 40.0, kv_copy_passes=2.0, expand_gqa=False, logit_bytes=2.0,
                   kernels_per_layer=40, kernels_per_iteration=10, cuda_graphs=False, attention_kernel="sdpa", attention_memory_eff=0.15),
        EngineMode("eager-repeat-kv", 112.0, 24.0, 10.0, 40.0, kv_copy_passes=2.0, expand_gqa=True, logit_bytes=2.0,
                   kernels_per_layer=42, kernels_per_iteration=10, cuda_graphs=False, attention_kernel="sdpa", attention_memory_eff=0.15),
        EngineMode("paged", 24.0, 12.0, 6.0, 12.0, kv_copy_passes=0.0, expand_gqa=False, logit_bytes=12.0,
                   kernels_per_layer=11, kernels_per_iteration=12, cuda_graphs=True, attention_kernel="paged", attention_memory_eff=0.7),
    )
}


def get_engine(name: str | EngineMode) -> EngineMode:
    """An engine mode by name (``eager``, ``eager-repeat-kv``, ``paged``)."""
    if isinstance(name, EngineMode):
        return name
    key = name.strip().lower()
    if key in ("vllm", "paged-attention"):
        key = "paged"
    if key not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
    return ENGINES[key]
