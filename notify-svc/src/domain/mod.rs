//! Validated values and rules of the service.
