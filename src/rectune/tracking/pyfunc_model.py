"""Entry file of the MLflow pyfunc model, logged as MLflow "models from code".

MLflow runs this file when the model is loaded, so the model is rebuilt from code and
its artifacts rather than unpickled. It is handed to MLflow as a path by
:meth:`rectune.tracking.Tracker.log_recommender`; never import it.
"""

from mlflow.models import set_model

from rectune.tracking.pyfunc import RecommenderModel

set_model(RecommenderModel())
