"""Skip markers for tests that need a part this machine may lack."""

import pytest
from django.conf import settings

requires_redis = pytest.mark.skipif(
    not settings.REDIS_AVAILABLE, reason="Redis does not answer on 127.0.0.1:6379"
)
