"""Fixtures of the fault tests."""

from pathlib import Path

import pytest

from tests.reliability.processes import REDIS_SERVER, PrivateRedis


@pytest.fixture
def private_redis():
    """A redis-server of the test's own, which it may kill and restart; gone after."""
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed")
    server = PrivateRedis().start()
    yield server
    server.kill()
