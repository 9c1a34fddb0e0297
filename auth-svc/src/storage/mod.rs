//! MongoDB collections and the Redis cache of auth-svc.
