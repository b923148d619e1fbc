"""Tests of the project itself: settings, Celery app, health, logs, metrics, security
headers, sessions, rate limits, errors, updates, layers, deployment files, the demo,
make run and the schema."""
