"""MLflow: the client and experiment helpers, and the logging of pipeline runs, benches,
scaling studies and `synthloom compare` (never part of a stage's code fingerprint)."""
