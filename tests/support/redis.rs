//! A real `redis-server` for tests (filled in by the Redis store work).
