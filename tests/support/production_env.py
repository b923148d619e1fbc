"""The environment of a production start: DEBUG off and real values for everything
the settings refuse to default."""

PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "x" * 20 + "-a-real-production-secret-of-sufficient-length-" + "y" * 10,
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/controlplane",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/15",
    "ALLOWED_HOSTS": "visio.numerique.gouv.fr",
}
