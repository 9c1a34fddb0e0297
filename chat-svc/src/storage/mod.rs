//! MongoDB collections and the Redis cache of chat-svc.
