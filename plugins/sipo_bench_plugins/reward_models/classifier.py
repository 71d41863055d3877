"""`hf-classifier` (any AutoModelForSequenceClassification reward model, by config alone) and
`dpa-rm` (RLHFlow/RewardModel-Mistral-7B-for-DPA-v1, a preset of it).

A head spec turns one output logit into one objective's score:
    score = (logits[head] - shift) / scale
and declares its direction (`higher_is_better`); scores are never sign-flipped.

Example (YAML, a task's scorer options or a third-party task):
    model: OpenAssistant/reward-model-deberta-v3-large-v2
    template: "{prompt}\\n{response}"
    objectives: {helpfulness: {head: 0}}
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Sequence

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from sipo_bench.api import ConfigError, Scorer, as_response, build, check, field

from .beaver import CONVERSATION

from .loading import (Loaded, batched, cached_load, check_loaded_weights, check_template, ensure_pad_token, fill,
                      model_ref, pick_device, pick_dtype)

#: The rating prompt of the DPA reward model, as its model card and the released SIPO
#: evaluation (`scripts/utils/HS_score.py`) write it. Check it against the model card before
#: trusting absolute numbers: a different wording changes the ratings.
DPA_TEMPLATE = ("[INST] You must read the following conversation carefully and rate the assistant's response from "
                "score 0-100 in these aspects: helpfulness, correctness, coherence, honesty, complexity, verbosity"
                "\n\nUser: {prompt}\n\nAssistant: {response} [/INST]")
#: the first five of its ten outputs, in order
DPA_HEADS = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")


@dataclass
class HeadSpec:
    head: int = field(0, help="Index of the model output (logit) that scores this objective.")
    shift: float = field(0.0, help="Subtracted from the logit: score = (logit - shift) / scale.")
    scale: float = field(1.0, help="Divides the shifted logit (non-zero).")
    higher_is_better: bool = field(True, help="Direction of the score (reported as is, never negated).")

    def __post_init__(self) -> None:
        check(self.head >= 0, "head", "an integer >= 0", self.head)
        check(self.scale != 0, "scale", "a non-zero number", self.scale)


@dataclass
class ClassifierOptions:
    model: str = field("", help="Hub id or local path of an AutoModelForSequenceClassification reward model.")
    objectives: dict[str, HeadSpec] = field({}, help="objective name -> {head, shift, scale, higher_is_better}.")
    template: str = field(CONVERSATION, help="Input text with {prompt} and {response}.")
    response_leading_space: bool = field(False, help="Put every response in the response convention (one leading space) "
                                                     "before filling the template; false inserts it stripped.")
    batch_size: int = field(8, help="Texts per forward pass (sorted by length to limit padding).")
    max_length: int | None = field(None, help="Truncate inputs to this many tokens; None = no truncation.")
    trust_remote_code: bool = field(False, help="Load the model's own code (its config's auto_map) as from_pretrained(trust_remote_code=True).")
    config_overrides: dict = field({}, help="Config attributes set before the weights load, e.g. {sliding_window: 4096}.")
    device: str | None = field(None, help="torch device; None = the run's device (`device:` of the run config).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field("auto", help="auto = the run device's inference dtype: bf16 on a GPU, fp32 on a CPU.")

    def __post_init__(self) -> None:
        check(isinstance(self.model, str) and bool(self.model), "model", "a hub id or local path", self.model)
        check(len(self.objectives) > 0, "objectives", "at least one objective: {name: {head: int}}", self.objectives)
        check(self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)
        check_template(self.template)


def load_classifier(path: str, device: str, dtype: Any, trust_remote_code: bool,
                    config_overrides: dict | None = None) -> Loaded:
    """The model through `AutoModelForSequenceClassification` (its own code when
    `trust_remote_code`), config attributes overridden first; every weight of the checkpoint
    must land in the model and every weight of the model must come from the checkpoint (a head
    loaded under another name would otherwise stay randomly initialised without an error)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    for key, value in (config_overrides or {}).items():
        setattr(config, key, value)
    model, info = AutoModelForSequenceClassification.from_pretrained(
        path, config=config, dtype=dtype, trust_remote_code=trust_remote_code, output_loading_info=True)
    check_loaded_weights(f"reward model ({type(model).__name__})", path, info,
                         expected="the checkpoint's own architecture"
                         + ("" if trust_remote_code else "; if its config has an auto_map, set trust_remote_code"))
    model.to(device).eval().requires_grad_(False)
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False  # one forward pass: no KV cache
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    tok.padding_side = "right"  # decoder models: no position shift, so batched == one at a time
    ensure_pad_token(tok, model)
    return Loaded(model, tok, {"num_labels": int(model.config.num_labels)})


class HFClassifierScorer(Scorer):
    name = "hf-classifier"
    description = "Any sequence-classification reward model: template, head per objective, (logit-shift)/scale, direction."
    options_class: ClassVar[type] = ClassifierOptions
    uses_accelerator = True  # a reward model: score stages ask for a GPU on a cuda run

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.cfg = build(ClassifierOptions, self._options(options), f"scorer {self.name}")
        self._loaded: Loaded | None = None

    def _options(self, options: dict) -> dict:
        return options

    def objectives(self) -> list[str]:
        return list(self.cfg.objectives)

    def directions(self) -> dict[str, bool]:
        """objective -> higher_is_better, as the scores are reported (no sign flips)."""
        return {o: h.higher_is_better for o, h in self.cfg.objectives.items()}

    def texts(self, prompts: Sequence[str], responses: Sequence[str]) -> list[str]:
        fix = as_response if self.cfg.response_leading_space else str.strip
        return [fill(self.cfg.template, p, fix(r)) for p, r in zip(prompts, responses)]

    def load(self) -> Loaded:
        if self._loaded is None:
            c = self.cfg
            device = pick_device(c.device)
            dtype = pick_dtype(c.dtype, device)
            path = model_ref(c.model)
            overrides = dict(c.config_overrides)
            loaded = cached_load(("seq-cls", path, device, str(dtype), c.trust_remote_code,
                                  json.dumps(overrides, sort_keys=True)),
                                 lambda: load_classifier(path, device, dtype, c.trust_remote_code, overrides))
            n = loaded.info["num_labels"]
            bad = {o: h.head for o, h in c.objectives.items() if h.head >= n}
            if bad:
                raise ConfigError(f"`scorer {self.name}.objectives`: expected head indices < {n} "
                                  f"(the model's num_labels), got {bad}")
            self._loaded = loaded
        return self._loaded

    def close(self) -> None:
        self._loaded = None  # the per-process cache frees the model once no scorer holds it

    def raw_logits(self, texts: Sequence[str], progress: Any = None) -> list[list[float]]:
        """One row of output logits per text (fp32), batched."""
        loaded = self.load()
        model, tok, c = loaded.model, loaded.tokenizer, self.cfg
        device = next(model.parameters()).device

        accepted = set(inspect.signature(model.forward).parameters)

        def run(batch: list[str]) -> list[list[float]]:
            enc = tok(batch, return_tensors="pt", padding=True, truncation=c.max_length is not None,
                      max_length=c.max_length)
            inputs = {k: v.to(device) for k, v in enc.items() if k in accepted}
            with torch.inference_mode():
                logits = model(**inputs).logits
            return logits.float().cpu().tolist()

        return batched(list(texts), c.batch_size, run, progress)

    def score(self, prompts: Sequence[str], responses: Sequence[str], progress: Any = None) -> dict[str, list[float]]:
        if len(prompts) != len(responses):
            raise ValueError(f"scorer {self.name}: {len(prompts)} prompts but {len(responses)} responses")
        logits = self.raw_logits(self.texts(prompts, responses), progress)
        return {o: [(row[h.head] - h.shift) / h.scale for row in logits] for o, h in self.cfg.objectives.items()}


@dataclass
class DPAOptions:
    model: str = field("RLHFlow/RewardModel-Mistral-7B-for-DPA-v1", help="Hub id or local path of the DPA reward model.")
    objectives: list[str] = field(list(DPA_HEADS), help="Which of the five HelpSteer attributes to report.")
    batch_size: int = field(8, help="Texts per forward pass.")
    max_length: int | None = field(None, help="Truncate inputs to this many tokens; None = no truncation.")
    trust_remote_code: bool = field(True, help="Load the model's custom code (its auto_map: MistralForAttributePrediction), "
                                               "as its model card and the released SIPO evaluation do.")
    sliding_window: int | None = field(4096, help="config.sliding_window set before loading, as the released SIPO "
                                                  "evaluation does (None leaves the checkpoint's value).")
    device: str | None = field(None, help="torch device; None = the run's device (`device:` of the run config).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field("auto", help="auto = the run device's inference dtype: bf16 on a GPU, fp32 on a CPU.")

    def __post_init__(self) -> None:
        for i, o in enumerate(self.objectives):
            check(o in DPA_HEADS, f"objectives[{i}]", "one of " + ", ".join(DPA_HEADS), o)
        if self.sliding_window is not None:
            check(self.sliding_window >= 1, "sliding_window", "an integer >= 1 or null", self.sliding_window)


class DPARewardScorer(HFClassifierScorer):
    """RLHFlow/RewardModel-Mistral-7B-for-DPA-v1: ten 0-100 ratings; outputs 0-4 are the HelpSteer
    attributes helpfulness, correctness, coherence, complexity, verbosity. Each is rescaled to
    the HelpSteer 0-4 scale as (s - 10) / 20, as the SIPO evaluation does. All five are
    higher-is-better as reported (for verbosity: higher = more verbose)."""

    name = "dpa-rm"
    options_class = DPAOptions  # what it accepts; `_options` turns them into ClassifierOptions
    description = "DPA reward model (Mistral-7B, 10 outputs): HelpSteer attributes, (s-10)/20, higher = more of it."

    def _options(self, options: dict) -> dict:
        d = build(DPAOptions, options, f"scorer {self.name}")
        return {"model": d.model, "template": DPA_TEMPLATE, "response_leading_space": True,
                "objectives": {o: {"head": DPA_HEADS.index(o), "shift": 10.0, "scale": 20.0, "higher_is_better": True}
                               for o in d.objectives},
                "batch_size": d.batch_size, "max_length": d.max_length, "device": d.device, "dtype": d.dtype,
                "trust_remote_code": d.trust_remote_code,
                "config_overrides": {} if d.sliding_window is None else {"sliding_window": d.sliding_window}}
