"""Scoring: the shared generate/score stages (`evaluation`), Pareto fronts and indicators
(`pareto`), statistics over seeds and prompts (`stats`), extra scorers on a task (`extra_scorers`)
and how much training pairs conflict (`conflicts`)."""
