//! The closed set of events. Each is one struct named in the past tense with
//! its routing key, version and exchange next to it ([`EventPayload`]);
//! [`Event`] is the decoded form of any of them. An unknown type or version
//! is a decode error, which consumers dead-letter; it never crashes them.

pub mod auth;
pub mod chat;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::envelope::Envelope;
use crate::topology::Exchange;

/// A typed event payload.
pub trait EventPayload: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Routing key and envelope `type`.
    const TYPE: &'static str;
    const VERSION: u32;
    const EXCHANGE: Exchange;
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("body is not an event envelope: {0}")]
    Envelope(serde_json::Error),
    #[error("unknown event type {kind} v{version}")]
    Unknown { kind: String, version: u32 },
    #[error("invalid data for {kind} v{version}: {source}")]
    Data {
        kind: String,
        version: u32,
        source: serde_json::Error,
    },
}

macro_rules! closed_event_set {
    ($($variant:ident => $ty:path),+ $(,)?) => {
        /// Any event of the closed set.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Event {
            $($variant($ty),)+
        }

        impl Event {
            /// Decodes the `data` of an envelope by its `type` and `version`.
            pub fn from_parts(kind: &str, version: u32, data: serde_json::Value) -> Result<Self, DecodeError> {
                $(
                    if kind == <$ty as EventPayload>::TYPE && version == <$ty as EventPayload>::VERSION {
                        return serde_json::from_value::<$ty>(data)
                            .map(Event::$variant)
                            .map_err(|source| DecodeError::Data { kind: kind.to_owned(), version, source });
                    }
                )+
                Err(DecodeError::Unknown { kind: kind.to_owned(), version })
            }

            /// The envelope's `data` for this event.
            pub fn to_data(&self) -> Result<serde_json::Value, serde_json::Error> {
                match self {
                    $(Event::$variant(e) => serde_json::to_value(e),)+
                }
            }

            pub fn kind(&self) -> &'static str {
                match self {
                    $(Event::$variant(_) => <$ty as EventPayload>::TYPE,)+
                }
            }
        }
    };
}

closed_event_set! {
    UserRegistered => auth::UserRegistered,
    UserUpdated => auth::UserUpdated,
    SessionRevoked => auth::SessionRevoked,
    LoginSucceeded => auth::LoginSucceeded,
    MfaEnabled => auth::MfaEnabled,
    MfaDisabled => auth::MfaDisabled,
    RecoveryCodeUsed => auth::RecoveryCodeUsed,
    EmailVerificationRequested => auth::EmailVerificationRequested,
    ChatCreated => chat::ChatCreated,
    ChatUpdated => chat::ChatUpdated,
    MemberAdded => chat::MemberAdded,
    MemberRemoved => chat::MemberRemoved,
    MessageCreated => chat::MessageCreated,
    MessageUpdated => chat::MessageUpdated,
    MessageDeleted => chat::MessageDeleted,
    ReadMarked => chat::ReadMarked,
    Typing => chat::Typing,
    Presence => chat::Presence,
}

/// An envelope whose data decoded into a known event.
pub type DecodedEnvelope = Envelope<Event>;

/// Decodes a message body into a typed envelope.
pub fn decode(body: &[u8]) -> Result<DecodedEnvelope, DecodeError> {
    let raw: Envelope<serde_json::Value> =
        serde_json::from_slice(body).map_err(DecodeError::Envelope)?;
    let event = Event::from_parts(&raw.kind, raw.version, raw.data)?;
    Ok(Envelope {
        id: raw.id,
        kind: raw.kind,
        version: raw.version,
        occurred_at: raw.occurred_at,
        producer: raw.producer,
        correlation_id: raw.correlation_id,
        data: event,
    })
}

/// Serializes a decoded envelope back into a message body.
pub fn encode(envelope: &DecodedEnvelope) -> Result<String, serde_json::Error> {
    serde_json::to_string(&Envelope {
        id: envelope.id,
        kind: envelope.kind.clone(),
        version: envelope.version,
        occurred_at: envelope.occurred_at,
        producer: envelope.producer.clone(),
        correlation_id: envelope.correlation_id.clone(),
        data: envelope.data.to_data()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_round_trips_through_its_envelope() {
        let data = auth::SessionRevoked {
            user_id: "u1".into(),
            session_id: "s1".into(),
            reason: "logout".into(),
        };
        let env = Envelope::new("auth-svc", Some("req-1".into()), data.clone());
        let body = serde_json::to_vec(&env).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["type"], "auth.session.revoked");
        assert_eq!(json["data"]["sessionId"], "s1");
        assert!(json["occurredAt"].as_str().unwrap().ends_with('Z'));
        let decoded = decode(&body).unwrap();
        assert_eq!(decoded.data, Event::SessionRevoked(data));
        let again = encode(&decoded).unwrap();
        assert_eq!(decode(again.as_bytes()).unwrap(), decoded);
    }

    #[test]
    fn unknown_types_and_versions_are_decode_errors() {
        let body =
            br#"{"id":"0190b5c8-0000-7000-8000-000000000000","type":"user.exploded","version":1,
            "occurredAt":"2026-01-01T00:00:00.000Z","producer":"x","data":{}}"#;
        assert!(matches!(decode(body), Err(DecodeError::Unknown { .. })));
        let body =
            br#"{"id":"0190b5c8-0000-7000-8000-000000000000","type":"auth.mfa.enabled","version":9,
            "occurredAt":"2026-01-01T00:00:00.000Z","producer":"x","data":{"userId":"u"}}"#;
        assert!(matches!(decode(body), Err(DecodeError::Unknown { .. })));
        assert!(matches!(decode(b"not json"), Err(DecodeError::Envelope(_))));
    }
}
