"""The layout of a base stage's output dir, the contract between a task's base stage and every
stage that loads the base model (trainers, soups, generation backends, vLLM): either the files of
`save_pretrained` or a `pointer.json` naming a hub id or path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def resolve_model_path(base_dir: Any, with_tokenizer: bool = False):
    """What to pass to `from_pretrained` for a base model.

    `base_dir` is a base stage dir holding either `save_pretrained` files (returned as is) or
    `pointer.json` = `{"model": "<hub id or path>", "tokenizer": "<optional, defaults to model>"}`;
    a string that is not a directory is taken as a hub id / path itself. A relative path in
    the pointer that exists relative to `base_dir` is resolved against it. With
    `with_tokenizer=True`, returns `(model, tokenizer)`."""
    p = Path(str(base_dir))
    if p.is_dir():
        pointer = p / "pointer.json"
        if pointer.exists():
            spec = json.loads(pointer.read_text())
            if not isinstance(spec, dict) or not isinstance(spec.get("model"), str) or not spec["model"]:
                raise ValueError(f"{pointer}: expected {{\"model\": \"<hub id or path>\"}}, got {spec!r}")

            def res(x: str) -> str:
                return str(p / x) if not Path(x).is_absolute() and (p / x).exists() else x

            model = res(spec["model"])
            tok = res(spec.get("tokenizer") or spec["model"])
        elif (p / "config.json").exists():
            model = tok = str(p)
        else:
            raise FileNotFoundError(f"{p}: neither a saved model (config.json) nor pointer.json")
    else:
        model = tok = str(base_dir)
    return (model, tok) if with_tokenizer else model
