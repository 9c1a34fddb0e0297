//! MongoDB collections and the Redis cache of notify-svc.
