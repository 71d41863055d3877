"""The Ray executor (extra `sipo-bench[ray]`)."""
