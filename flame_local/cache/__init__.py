"""The object cache: the in-memory store (:mod:`~flame_local.cache.store`) and the Arrow Flight
server in front of it (:mod:`~flame_local.cache.server`), wire-compatible with Flame v0.6.0."""
