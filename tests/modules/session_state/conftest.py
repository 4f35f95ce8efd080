"""The real redis-server fixture (tests.support.redis)."""

from tests.support.redis import redis_server as redis_server
