"""Benchmark harness, core side: bench configs, the real-data reference and the comparison
table. The Prefect flow is `flows/bench.py`; MLflow logging is `tracking/bench.py`."""
