"""SIPO: self-improvement towards Pareto optimality (Li et al., 2025)."""
