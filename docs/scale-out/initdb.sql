-- The databases of docs/scale-out.md: MLflow runs, Optuna studies, and one Feast store per data
-- dir (a second data dir needs a database of its own: CREATE DATABASE feast_other).
CREATE DATABASE mlflow;
CREATE DATABASE optuna;
CREATE DATABASE feast;
