"""Hub-backed tasks of the SIPO paper: beavertails (PKU-SafeRLHF-10K) and helpsteer."""
