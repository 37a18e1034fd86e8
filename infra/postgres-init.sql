-- One PostgreSQL, two databases: MLflow's tracking/registry store and Prefect's.
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
