"""LM tasks over real language models, offline: the generic `lm-task`, its embedded instance
`smollm2-hh`, and offline scorers (`vader-sentiment`, `profanity`, `length`, `lm-judge`).

Registered lazily: listing plugins imports neither torch nor transformers (docs/real_model.md).
"""

from __future__ import annotations

from sipo_bench.api import hookimpl
from sipo_bench.api import Lazy

__version__ = "0.1.0"


@hookimpl
def sipo_bench_register_tasks() -> list:
    return [
        Lazy("lm-task", "sipo_bench_plugins.lm_task.task:LMTask",
             "A real LM (GGUF / dir / hub id) on a prompt set; k objectives labelled by AI feedback from scorers."),
        Lazy("smollm2-hh", "sipo_bench_plugins.lm_task.task:SmolLM2HHTask",
             "SmolLM2-135M-Instruct offline: helpful vs harmless, judged by a frozen copy of the model."),
    ]


@hookimpl
def sipo_bench_register_scorers() -> list:
    return [
        Lazy("vader-sentiment", "sipo_bench_plugins.lm_task.scorers:VaderSentiment",
             "VADER compound sentiment in [-1, 1] (offline lexicon)."),
        Lazy("profanity", "sipo_bench_plugins.lm_task.scorers:Profanity",
             "alt-profanity-check P(profane), lower is better (offline linear model)."),
        Lazy("length", "sipo_bench_plugins.lm_task.scorers:Length", "Word count of the response."),
        Lazy("lm-judge", "sipo_bench_plugins.lm_task.scorers:LMJudge",
             "Frozen instruct LM: log p(Yes) - log p(No) to a rubric question through its chat template."),
    ]
