"""Llama-style decoder shapes: parameters, weight and KV-cache bytes, FLOPs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SHAPE_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size")


@dataclass(frozen=True)
class ModelShape:
    """A Llama-style decoder (grouped-query attention, gated MLP, untied LM head by default)."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    name: str = "custom"
    tie_word_embeddings: bool = False

    def __post_init__(self) -> None:
        for field in SHAPE_FIELDS:
            if getattr(self, field) < 1:
                raise ValueError(f"shape {self.name}: {field} must be >= 1")
        if self.hidden_size % self.num_attention_heads or self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"shape {self.name}: heads must divide hidden_size and be a multiple of the KV heads")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def kv_dim(self) -> int:
        return self.head_dim * self.num_key_value_heads

    @property
    def layer_params(self) -> int:
        h = self.hidden_size
        return 2 * h * h + 2 * h * self.kv_dim + 3 * h * self.intermediate_size + 2 * h

    @property
    def lm_head_params(self) -> int:
        return self.hidden_size * self.vocab_size

    @property
    def params(self) -> int:
        embed = self.vocab_size * self.hidden_size
        head = 0 if self.tie_word_embeddings else self.lm_head_params
        return embed + self.num_hidden_layers * self.layer_params + self.hidden_size + head

    @property
    def linear_params(self) -> int:
        """Weights multiplied by every token (the decoder layers, without the LM head)."""
        return self.num_hidden_layers * self.layer_params

    def weight_bytes(self, dtype_bytes: int = 2) -> int:
        return self.params * dtype_bytes

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        return 2 * self.num_hidden_layers * self.kv_dim * dtype_bytes


SHAPES: dict[str, ModelShape] = {
    s.name: s
    for s in (
        ModelShape(2048, 8192, 16, 32, 8, 128256, "llama-1b"),
        ModelShape(3072, 8192, 28, 24, 8, 128256, "llama-3b"),
        ModelShape(4096, 14336, 32, 32, 8, 128256, "llama-8b"),
        ModelShape(5120, 13824, 40, 40, 40, 32000, "llama-13b"),
        ModelShape(8192, 28672, 80, 64, 8, 128256, "llama-70b"),
        ModelShape(4096, 14336, 32, 32, 8, 32768, "mistral-7b"),
        ModelShape(3584, 18944, 28, 28, 4, 152064, "qwen2.5-7b"),
    )
}


def shape_from_mapping(data: dict, name: str, where: str) -> ModelShape:
    missing = [f for f in SHAPE_FIELDS if f not in data]
    if missing:
        raise ValueError(f"{where}: shape lacks {', '.join(missing)}")
    try:
        values = {f: int(data[f]) for f in SHAPE_FIELDS}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: shape fields must be integers: {exc}") from exc
    return ModelShape(**values, name=name, tie_word_embeddings=bool(data.get("tie_word_embeddings", False)))


def load_shape(name_or_path: str | Path) -> ModelShape:
    """A built-in shape by name, or a shape JSON / profile JSON (its ``shape`` field)."""
    key = str(name_or_path)
    if key.lower() in SHAPES:
        return SHAPES[key.lower()]
    path = Path(key)
    if not path.suffix == ".json" and not path.exists():
        raise ValueError(f"unknown model {key!r}; built-in: {', '.join(SHAPES)}; or give a shape/profile JSON file")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read model shape: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a model shape must be a JSON object")
    shape = data.get("shape", data)
    if not isinstance(shape, dict):
        raise ValueError(f"{path}: field 'shape' must be an object")
    return shape_from_mapping(shape, str(data.get("model", path.stem)), str(path))
