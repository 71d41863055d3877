"""The transformers generation backend (batched generation, soups, MOD fusion, log-probs)."""
