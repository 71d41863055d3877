"""What the paper tasks share: the one dataset loader (hub id or local copy), the
conflict-fraction subsets of the released SIPO code, and the base-model pointer.

Nothing here imports `datasets` or `transformers` at import time.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Literal, Sequence

from sipo_bench.api import ConfigError, check

#: file suffixes a single local file may have, and the `datasets` builder that reads it
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".jsonl.gz": "json", ".json.gz": "json",
                 ".parquet": "parquet", ".csv": "csv"}


def looks_like_path(source: str) -> bool:
    """True for strings that can only be a local path (absolute, ./, ../, ~): a hub id never
    starts like that, so a missing one is a config error rather than a failed download."""
    return source.startswith(("/", "./", "../", "~")) or source in (".", "..")


def check_source(value: str | None, name: str, *, optional: bool = False) -> None:
    """Config-time check of a dataset/model option: a non-empty string, and an existing path
    when it can only be a path."""
    if value is None and optional:
        return
    check(isinstance(value, str) and bool(value.strip()), name, "a hub id or a local path", value)
    if looks_like_path(value):
        check(Path(value).expanduser().exists(), name, "an existing local path or a hub id",
              f"{value} (not found)")


def _file_builder(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in sorted(FILE_BUILDERS, key=len, reverse=True):
        if name.endswith(suffix):
            return FILE_BUILDERS[suffix]
    return None


def load_split(source: str, split: str, *, field: str) -> Any:
    """Load split `split` of `source` as a `datasets.Dataset`.

    `source` is a hub id or a local path; both go through this one function:

    - a directory written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk` is read with
      `datasets.load_from_disk` (and the split picked from a DatasetDict);
    - a single `.jsonl`/`.json`/`.jsonl.gz`/`.parquet`/`.csv` file is read as the requested split
      (one file holds one split);
    - anything else (a hub id, or a local directory laid out like the hub repo: `train.jsonl`,
      `validation.jsonl.gz`, `data/test-*.parquet`, ...) is read with
      `datasets.load_dataset(source, split=split)`: the same call for the hub and a local copy.
    `field` names the config option in error messages.
    """
    import datasets

    p = Path(source).expanduser()
    if p.exists():
        if p.is_dir() and ((p / "dataset_dict.json").is_file() or (p / "state.json").is_file()):
            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise ConfigError(f"`{field}`: expected a dataset with split {split!r}, got splits "
                                      f"{sorted(ds)} in {source}")
                ds = ds[split]
            return ds
        if p.is_file():
            builder = _file_builder(p)
            if builder is None:
                raise ConfigError(f"`{field}`: expected a dataset directory or a .jsonl/.json/.parquet/.csv "
                                  f"file, got {source!r}")
            return datasets.load_dataset(builder, data_files=str(p), split="train")
        source = str(p)
    elif looks_like_path(source):
        raise ConfigError(f"`{field}`: expected an existing local path or a hub id, got {source!r} (not found)")
    try:
        return datasets.load_dataset(source, split=split)
    except ValueError as e:  # unknown split and friends: one line naming the option
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"`{field}`: cannot load split {split!r} of {source!r}: {msg}") from e


def require_columns(ds: Any, columns: Sequence[str], field: str, source: str) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise ConfigError(f"`{field}`: expected columns {list(columns)} in {source!r}, "
                          f"missing {missing} (has {ds.column_names})")




def conflict_subset(conflicting: list, non_conflicting: list, fraction: float,
                    take: Literal["first", "last"]) -> tuple[list, list, list]:
    """The conflict-controlled subset of the released SIPO code.

    total = min(#conflicting, #non-conflicting); int(total * fraction) conflicting pairs and the
    rest non-conflicting, taken from the start (`take="first"`, HelpSteer) or the end
    (`take="last"`, PKU) of each pool; conflicting + non-conflicting, shuffled by
    `random.seed(42); random.shuffle(...)`. Returns (conflicting part, non-conflicting part,
    shuffled merge).

    Deviation from the released code: for PKU it slices `pool[-n:]`, which for n = 0 returns
    the WHOLE pool (so its fraction 0.0 keeps every conflicting pair); here n = 0 takes none.
    """
    total = min(len(conflicting), len(non_conflicting))
    n_conf = int(total * fraction)
    n_non = total - n_conf

    def pick(pool: list, n: int) -> list:
        if n == 0:
            return []
        return list(pool[:n]) if take == "first" else list(pool[-n:])

    sel_c, sel_n = pick(conflicting, n_conf), pick(non_conflicting, n_non)
    merged = sel_c + sel_n
    random.Random(42).shuffle(merged)
    return sel_c, sel_n, merged


def resolve_model_ref(model: str) -> str:
    """An existing local path becomes absolute (a stage may run in another cwd); a hub id is
    returned unchanged."""
    p = Path(model).expanduser()
    return str(p.resolve()) if p.exists() else model


def write_pointer(out: Path, model: str) -> dict:
    """The base stage of a model that lives elsewhere: `pointer.json` = {"model": ...}."""
    ref = resolve_model_ref(model)
    (Path(out) / "pointer.json").write_text(json.dumps({"model": ref}) + "\n")
    return {"model": ref}


def check_fraction(value: float | None, name: str) -> None:
    if value is not None:
        check(0.0 <= value <= 1.0, name, "a fraction in [0, 1] or null (all pairs)", value)
