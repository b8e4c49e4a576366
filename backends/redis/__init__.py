"""Redis adapters for distributed mode: the SeenSet and the RateLimiter."""

from backends.redis.client import DEFAULT_PREFIX, RedisOptions, connect
from backends.redis.ratelimit import RedisRateLimiter
from backends.redis.seen import RedisSeenSet

__all__ = ["DEFAULT_PREFIX", "RedisOptions", "RedisRateLimiter", "RedisSeenSet", "connect"]
