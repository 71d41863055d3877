"""The optional vLLM generation backend (extra `sipo-bench[vllm]`)."""
