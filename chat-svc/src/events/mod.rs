//! Events chat-svc publishes (through the outbox) and consumes.
