//! The envelope of spec/events.md. The body of every AMQP message is one
//! serialized [`Envelope`].

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::EventPayload;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<T = serde_json::Value> {
    /// UUID v7: unique, time-ordered; consumers deduplicate on it.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
    #[serde(with = "rfc3339_millis")]
    pub occurred_at: DateTime<Utc>,
    pub producer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    pub data: T,
}

impl<T: EventPayload> Envelope<T> {
    pub fn new(producer: &str, correlation_id: Option<String>, data: T) -> Self {
        Self::with_id(Uuid::now_v7(), producer, correlation_id, data)
    }

    /// An envelope whose id was chosen before the event was built (the
    /// producer recorded it somewhere else first).
    pub fn with_id(id: Uuid, producer: &str, correlation_id: Option<String>, data: T) -> Self {
        Self {
            id,
            kind: T::TYPE.to_owned(),
            version: T::VERSION,
            occurred_at: Utc::now(),
            producer: producer.to_owned(),
            correlation_id,
            data,
        }
    }
}

mod rfc3339_millis {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}
