//! Events notify-svc publishes (through the outbox) and consumes.
