//! Layered configuration: built-in defaults, then an optional TOML file
//! (`CONFIG_FILE`), then environment variables named after the keys
//! (`HTTP_PORT`, `MONGODB_URI`, ...). Loaded once at start, validated, and
//! passed explicitly: there is no global config.

use std::path::PathBuf;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// A configuration problem, naming the offending key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    pub fn key(key: &str, problem: impl std::fmt::Display) -> Self {
        Self(format!("`{key}` {problem}"))
    }
}

/// Settings every service has. Field names are the lower-cased
/// environment variable names.
#[derive(Debug, Clone, Deserialize)]
pub struct CommonConfig {
    /// Address the HTTP server binds to.
    pub http_host: String,
    /// Port of the HTTP server; 0 picks a free one (tests).
    pub http_port: u16,
    /// MongoDB connection string (may hold credentials).
    pub mongodb_uri: SecretString,
    /// This service's own database.
    pub mongodb_database: String,
    pub redis_url: SecretString,
    /// Prefix of every Redis key, so services and tests never collide.
    pub redis_prefix: String,
    pub amqp_url: SecretString,
    /// Prefix of every exchange and queue name (empty in production; unique per test).
    #[serde(default)]
    pub amqp_prefix: String,
    /// `quorum` (production) or `classic` (tests: lighter).
    pub amqp_queue_type: String,
    /// Durable queues unused this long are deleted (0: never; tests set it).
    pub amqp_queue_expires_secs: u64,
    /// Distinguishes instances of one service (per-instance queues, logs).
    pub instance_id: String,
    /// Origins allowed for CORS and WebSocket upgrades.
    #[serde(deserialize_with = "string_or_list")]
    pub allowed_origins: Vec<String>,
    /// Peers whose `X-Forwarded-For` is believed (the gateway).
    #[serde(deserialize_with = "string_or_list")]
    pub trusted_proxies: Vec<String>,
    /// PEM file of the Ed25519 public key that verifies access tokens.
    pub jwt_public_key_file: PathBuf,
    /// `kid` of that key.
    pub jwt_key_id: String,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// Seconds to let in-flight work finish after SIGTERM.
    pub shutdown_timeout_secs: u64,
}

/// Keys every service reads from the environment.
pub const COMMON_KEYS: &[&str] = &[
    "http_host",
    "http_port",
    "mongodb_uri",
    "mongodb_database",
    "redis_url",
    "redis_prefix",
    "amqp_url",
    "amqp_prefix",
    "amqp_queue_type",
    "amqp_queue_expires_secs",
    "instance_id",
    "allowed_origins",
    "trusted_proxies",
    "jwt_public_key_file",
    "jwt_key_id",
    "jwt_issuer",
    "jwt_audience",
    "shutdown_timeout_secs",
];

/// `<service>-<host>-<random>`: unique per process in any deployment. A
/// pid is not (every container is pid 1), and two replicas sharing an id
/// would share presence entries and leases. Set `INSTANCE_ID` only to a
/// value no other live replica has.
fn default_instance_id(service: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(32)
        .collect();
    let host = if host.is_empty() {
        "host".to_owned()
    } else {
        host
    };
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{service}-{host}-{suffix}")
}

/// Defaults of the common keys for one service; a service adds its own.
pub fn common_defaults(service: &str, port: u16) -> serde_json::Value {
    serde_json::json!({
        "http_host": "127.0.0.1",
        "http_port": port,
        "mongodb_uri": "mongodb://127.0.0.1:27017",
        "mongodb_database": service.replace('-', "_"),
        "redis_url": "redis://127.0.0.1:6379",
        "redis_prefix": format!("{service}:"),
        "amqp_url": "amqp://guest:guest@127.0.0.1:5672/%2f",
        "amqp_prefix": "",
        "amqp_queue_type": "quorum",
        "amqp_queue_expires_secs": 0,
        "instance_id": default_instance_id(service),
        "allowed_origins": ["http://127.0.0.1:8080", "http://localhost:8080"],
        "trusted_proxies": ["127.0.0.1"],
        "jwt_public_key_file": ".dev/keys/jwt-public.pem",
        "jwt_key_id": "dev-1",
        "jwt_issuer": "auth-svc",
        "jwt_audience": "chat-app",
        "shutdown_timeout_secs": 20,
    })
}

/// The layered sources: `defaults`, then `CONFIG_FILE` (if set), then the
/// environment variables whose lower-cased names are in `keys`.
pub fn sources(defaults: serde_json::Value, keys: &[&str]) -> Figment {
    let mut figment = Figment::from(Serialized::defaults(defaults));
    if let Ok(path) = std::env::var("CONFIG_FILE") {
        figment = figment.merge(Toml::file_exact(path));
    }
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    // Figment hands the variable name over as written (`HTTP_PORT`).
    figment
        .merge(Env::raw().filter(move |k| keys.iter().any(|x| k.as_str().eq_ignore_ascii_case(x))))
}

/// Keys holding credentials, which may also come from a file named by
/// `<KEY>_FILE` (Docker and Kubernetes secrets): `MONGODB_URI_FILE=/run/secrets/x`.
pub const SECRET_KEYS: &[&str] = &["mongodb_uri", "redis_url", "amqp_url", "smtp_url"];

/// The values of `<KEY>_FILE` for those of `keys` that are credentials; the
/// file's content without its trailing newline. A set variable whose file
/// cannot be read is an error naming the key.
pub fn secret_files(keys: &[&str]) -> Result<serde_json::Value, ConfigError> {
    let mut values = serde_json::Map::new();
    for key in keys.iter().filter(|k| SECRET_KEYS.contains(k)) {
        let var = format!("{}_FILE", key.to_ascii_uppercase());
        if let Some(path) = std::env::var_os(&var) {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::key(
                    &format!("{key}_file"),
                    format!("`{}` cannot be read: {e}", PathBuf::from(&path).display()),
                )
            })?;
            values.insert(
                (*key).to_owned(),
                text.trim_end_matches(['\r', '\n']).into(),
            );
        }
    }
    Ok(serde_json::Value::Object(values))
}

/// A service's whole configuration: the common keys plus its own section
/// `S` (whose environment keys are `own_keys`), then credentials from
/// `<KEY>_FILE` files ([`SECRET_KEYS`]), with `overrides` (tests) on top of
/// everything. The common keys are validated here.
pub fn load_service<S: DeserializeOwned>(
    defaults: serde_json::Value,
    own_keys: &[&str],
    overrides: serde_json::Value,
) -> Result<(CommonConfig, S), ConfigError> {
    let keys: Vec<&str> = COMMON_KEYS.iter().chain(own_keys).copied().collect();
    let mut figment = sources(defaults, &keys).merge(Serialized::defaults(secret_files(&keys)?));
    if !overrides.is_null() {
        figment = figment.merge(Serialized::defaults(overrides));
    }
    let common: CommonConfig = extract(&figment)?;
    common.validate()?;
    Ok((common, extract(&figment)?))
}

/// Extracts one section (the common keys, or a service's own) from the
/// sources, naming the key in any error.
pub fn extract<T: DeserializeOwned>(figment: &Figment) -> Result<T, ConfigError> {
    figment.extract().map_err(|e| {
        let key = e.path.join(".");
        ConfigError(format!("`{key}`: {}", e.kind))
    })
}

impl CommonConfig {
    /// Checks what serde cannot: URL schemes, addresses, files.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let scheme = |key: &str, value: &SecretString, schemes: &[&str]| {
            let v = value.expose_secret();
            if schemes.iter().any(|s| v.starts_with(&format!("{s}://"))) {
                Ok(())
            } else {
                Err(ConfigError::key(
                    key,
                    format!("must start with one of {schemes:?}"),
                ))
            }
        };
        scheme(
            "mongodb_uri",
            &self.mongodb_uri,
            &["mongodb", "mongodb+srv"],
        )?;
        // TLS that the clients of this build cannot speak is refused, never
        // quietly downgraded to plain text (lapin and redis are built
        // without TLS; the MongoDB driver has it built in).
        let no_tls = |key: &str, value: &SecretString, tls: &str| {
            let asks = value
                .expose_secret()
                .split(',')
                .any(|u| u.trim().starts_with(&format!("{tls}://")));
            if asks {
                Err(ConfigError::key(
                    key,
                    format!("{tls}:// asks for TLS, which this build does not support; refusing rather than connecting in plain text"),
                ))
            } else {
                Ok(())
            }
        };
        no_tls("redis_url", &self.redis_url, "rediss")?;
        no_tls("amqp_url", &self.amqp_url, "amqps")?;
        scheme("redis_url", &self.redis_url, &["redis", "redis+unix"])?;
        // One URL, or the nodes of a cluster separated by commas.
        for node in self.amqp_url.expose_secret().split(',') {
            scheme("amqp_url", &SecretString::from(node.trim()), &["amqp"])?;
        }
        if !matches!(self.amqp_queue_type.as_str(), "quorum" | "classic") {
            return Err(ConfigError::key(
                "amqp_queue_type",
                "must be quorum or classic",
            ));
        }
        if self.mongodb_database.is_empty()
            || self
                .mongodb_database
                .contains(['/', '.', ' ', '$', '"', '\\'])
        {
            return Err(ConfigError::key(
                "mongodb_database",
                "is not a valid database name",
            ));
        }
        crate::client_ip::TrustedProxies::parse(&self.trusted_proxies).map_err(|bad| {
            ConfigError::key(
                "trusted_proxies",
                format!("`{bad}` is not an IP address or network"),
            )
        })?;
        for origin in &self.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
            {
                return Err(ConfigError::key(
                    "allowed_origins",
                    format!("`{origin}` must be scheme://host[:port] without a trailing slash"),
                ));
            }
        }
        if !self.jwt_public_key_file.is_file() {
            return Err(ConfigError::key(
                "jwt_public_key_file",
                format!(
                    "`{}` is not a readable file",
                    self.jwt_public_key_file.display()
                ),
            ));
        }
        Ok(())
    }

    /// Valid after [`CommonConfig::validate`].
    pub fn trusted_proxies(&self) -> crate::client_ip::TrustedProxies {
        crate::client_ip::TrustedProxies::parse(&self.trusted_proxies).unwrap_or_default()
    }
}

/// Accepts `true`/`false`, `1`/`0` and their string forms (`DEV_X=1`).
pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Int(u64),
        Text(String),
    }
    match Flag::deserialize(d)? {
        Flag::Bool(b) => Ok(b),
        Flag::Int(0) => Ok(false),
        Flag::Int(1) => Ok(true),
        Flag::Text(t) if matches!(t.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
        Flag::Text(t) if matches!(t.as_str(), "0" | "false" | "no" | "off" | "") => Ok(false),
        _ => Err(serde::de::Error::custom("expected true/false or 1/0")),
    }
}

/// Accepts `["a", "b"]` from TOML or `a,b` from an environment variable.
pub fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        OneOrMany::Many(v) => v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(d: serde_json::Value) -> Result<CommonConfig, ConfigError> {
        extract(&sources(d, &[]))
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let mut d = common_defaults("auth-svc", 8081);
        d["http_port"] = serde_json::json!("not-a-port");
        let err = load(d).unwrap_err();
        assert!(err.0.contains("http_port"), "{err}");
    }

    #[test]
    fn environment_variables_override_defaults() {
        // A key no other test reads from the environment.
        std::env::set_var("AMQP_PREFIX", "from-env.");
        let c: CommonConfig =
            extract(&sources(common_defaults("auth-svc", 8081), COMMON_KEYS)).unwrap();
        assert_eq!(c.amqp_prefix, "from-env.");
    }

    #[test]
    fn flags_accept_one_and_zero() {
        #[derive(Deserialize)]
        struct F {
            #[serde(deserialize_with = "flag")]
            f: bool,
        }
        let parse = |v: serde_json::Value| {
            serde_json::from_value::<F>(serde_json::json!({ "f": v })).map(|x| x.f)
        };
        assert!(parse(1.into()).unwrap());
        assert!(!parse("0".into()).unwrap());
        assert!(parse(true.into()).unwrap());
        assert!(parse(2.into()).is_err());
    }

    #[test]
    fn lists_come_from_comma_separated_strings() {
        let mut d = common_defaults("auth-svc", 8081);
        d["allowed_origins"] = serde_json::json!("http://a:1, http://b:2");
        let t = load(d).unwrap();
        assert_eq!(t.allowed_origins, vec!["http://a:1", "http://b:2"]);
    }

    #[test]
    fn validation_rejects_a_wrong_scheme_by_key() {
        let mut d = common_defaults("auth-svc", 8081);
        d["amqp_url"] = serde_json::json!("http://x");
        let t = load(d).unwrap();
        let err = t.validate().unwrap_err();
        assert!(err.0.contains("amqp_url"), "{err}");
    }

    #[test]
    fn amqp_url_may_list_the_nodes_of_a_cluster() {
        let mut d = common_defaults("chat-svc", 8082);
        d["amqp_url"] = serde_json::json!("amqp://a:1/%2f, amqp://b:2/%2f");
        // (Later checks, such as the key files, may still fail here.)
        if let Err(e) = load(d.clone()).unwrap().validate() {
            assert!(!e.0.contains("amqp_url"), "{e}");
        }
        d["amqp_url"] = serde_json::json!("amqp://a:1/%2f,http://b:2");
        let err = load(d).unwrap().validate().unwrap_err();
        assert!(err.0.contains("amqp_url"), "{err}");
    }

    #[test]
    fn tls_urls_are_refused_rather_than_downgraded() {
        for (key, url) in [
            ("amqp_url", "amqps://svc:pw@broker:5671/%2f"),
            (
                "amqp_url",
                "amqp://svc:pw@a:5672/%2f,amqps://svc:pw@b:5671/%2f",
            ),
            ("redis_url", "rediss://svc:pw@redis:6380"),
        ] {
            let mut d = common_defaults("chat-svc", 8082);
            d[key] = serde_json::json!(url);
            let err = load(d).unwrap().validate().unwrap_err();
            assert!(err.0.contains(key) && err.0.contains("TLS"), "{err}");
            assert!(
                !err.0.contains("pw"),
                "the URL's secret is not echoed: {err}"
            );
        }
    }

    #[test]
    fn credentials_come_from_files_named_by_key_file_variables() {
        // Variables no other test reads.
        let dir = std::env::temp_dir().join(format!("config-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("redis-url");
        std::fs::write(&file, "redis://svc:pw@redis:6379\n").unwrap();
        std::env::set_var("REDIS_URL_FILE", &file);
        std::env::set_var("SMTP_URL_FILE", dir.join("missing"));
        let v = secret_files(&["redis_url", "http_port"]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({ "redis_url": "redis://svc:pw@redis:6379" })
        );
        let err = secret_files(&["smtp_url"]).unwrap_err();
        assert!(err.0.contains("smtp_url_file"), "{err}");
        std::env::remove_var("REDIS_URL_FILE");
        std::env::remove_var("SMTP_URL_FILE");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let mut d = common_defaults("auth-svc", 8081);
        d["mongodb_uri"] = serde_json::json!("mongodb://user:hunter2@db");
        let t = load(d).unwrap();
        assert!(!format!("{t:?}").contains("hunter2"));
    }

    #[test]
    fn replicas_with_identical_environments_get_distinct_instance_ids() {
        // Two replicas of one image: same host name when both are pid 1 in
        // their containers, same environment. Their defaults still differ.
        let a = load(common_defaults("chat-svc", 8082)).unwrap().instance_id;
        let b = load(common_defaults("chat-svc", 8082)).unwrap().instance_id;
        assert_ne!(a, b);
        assert!(a.starts_with("chat-svc-"), "{a}");
        assert!(!a.ends_with(&format!("-{}", std::process::id())), "{a}");
    }
}
