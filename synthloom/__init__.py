"""synthloom core: models, methods, serialization, filters and metrics as plain functions.

Nothing in this package imports Prefect or MLflow; `tasks/` and `flows/` wrap it.
"""

__version__ = "0.1.0"
