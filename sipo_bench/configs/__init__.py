"""Run configs: typed config dataclasses (`schema`), method variants and comparisons
(`variants`), and sweeps of one config over many option values (`sweep`)."""
