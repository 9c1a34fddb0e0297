//! Events auth-svc publishes through the outbox.
