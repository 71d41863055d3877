"""Built-in baseline alignment methods: dpo, dpo-soups, mod, modpo, dpo-lw, rewarded-soups."""
