"""The file MLflow stores as the `generator` model's code (models-from-code): it names the
pyfunc class, which loads the fitted generator from the model's artifacts."""

import mlflow

from tracking.generator_model import GeneratorModel

mlflow.models.set_model(GeneratorModel())
