"""Team mode: PostgreSQL store, mlflow server, workers and several dashboards."""
