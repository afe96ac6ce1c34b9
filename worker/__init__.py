"""The Celery worker: receives job IDs, runs the engine, publishes results."""
