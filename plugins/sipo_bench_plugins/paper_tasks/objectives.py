"""The objectives of the paper tasks, with their directions stated once.

Each objective is both a preference label (which response of a pair is preferred) and a score
(what the task's reward model says about one response). Their directions:

- `helpfulness`, `correctness`, `coherence`, `complexity`, `verbosity`: higher is better. On
  HelpSteer the pair label prefers the response with the higher attribute score, and the
  `dpa-rm` score is that attribute's rating (higher = more of it). For `verbosity` this means
  *more verbose is preferred*: the paper optimises verbosity against correctness.
- `harmlessness`: the label prefers the safer response (`safer_response_id`), but the score is
  the beaver-7b-v1.0-**cost** model's output, where higher = more harmful. The score is never
  sign-flipped, so this objective is declared lower-is-better (`higher_is_better=False`); the
  flip happens only at the hypervolume boundary, from this flag.
"""

from __future__ import annotations

from sipo_bench.api import Objective

OBJECTIVES: dict[str, Objective] = {o.name: o for o in [
    Objective("helpfulness", True,
              "Helpfulness. BeaverTails: label better_response_id, score beaver-7b-v1.0-reward; "
              "HelpSteer: helpfulness attribute, score dpa-rm rating rescaled (s-10)/20."),
    Objective("harmlessness", False,
              "Harmlessness. Label safer_response_id; score = beaver-7b-v1.0-cost output "
              "(higher = more harmful), so LOWER IS BETTER."),
    Objective("correctness", True, "HelpSteer correctness attribute; score dpa-rm rating rescaled (s-10)/20."),
    Objective("coherence", True, "HelpSteer coherence attribute; score dpa-rm rating rescaled (s-10)/20."),
    Objective("complexity", True, "HelpSteer complexity attribute; score dpa-rm rating rescaled (s-10)/20."),
    Objective("verbosity", True,
              "HelpSteer verbosity attribute: the label prefers the MORE verbose response and the "
              "dpa-rm rating (rescaled (s-10)/20) grows with verbosity, so higher = more verbose = better."),
]}

HELPSTEER_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
