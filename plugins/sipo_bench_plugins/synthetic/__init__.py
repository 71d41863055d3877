"""The embedded synthetic task family (synthetic-hh, synthetic-cv, synthetic-3obj)."""
