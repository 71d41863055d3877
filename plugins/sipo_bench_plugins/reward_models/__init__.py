"""Reward-model scorers: beaver-reward, beaver-cost, dpa-rm, hf-classifier."""
