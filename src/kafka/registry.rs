//! The schema registry client: register schemas and fetch writer schemas by id, over the
//! Confluent-compatible API (Apicurio serves it under `/apis/ccompat/v7`).

use std::time::Duration;

use schema_registry_converter::async_impl::schema_registry::{get_all_subjects, get_schema_by_id, post_schema, SrSettings};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

use crate::config::RegistryConfig;

/// A registry call that failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered that the schema id does not exist (HTTP 404): permanent.
    #[error("schema registry has no schema with id {0}")]
    NotFound(u32),
    /// The registry is unreachable or failed (connection error, 5xx, timeout): retry later.
    #[error("schema registry unavailable (check registry.url, and registry.username/password if it needs them): {0}")]
    Unavailable(String),
    /// The configuration is unusable.
    #[error("registry.url: {0}")]
    Config(String),
}

impl RegistryError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Unavailable(_))
    }
}

/// A client for one registry.
pub struct Registry {
    settings: SrSettings,
}

impl Registry {
    /// Builds a client from `[registry]`; `None` when no URL is configured.
    pub fn from_config(config: &RegistryConfig) -> Result<Option<Registry>, RegistryError> {
        let Some(url) = config.url.as_deref() else { return Ok(None) };
        let mut builder = SrSettings::new_builder(url.trim_end_matches('/').to_owned());
        builder.set_timeout(Duration::from_secs(10));
        if let Some(user) = config.username.as_deref() {
            builder.set_basic_authorization(user, config.password.as_deref());
        }
        let settings = builder.build().map_err(|error| RegistryError::Config(error.error))?;
        Ok(Some(Registry { settings }))
    }

    /// Registers an Avro schema under `subject`; returns its id (the existing id when the same
    /// schema is already registered).
    pub async fn register_avro(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema.to_owned());
        post_schema(&self.settings, subject.to_owned(), supplied)
            .await
            .map(|registered| registered.id)
            .map_err(|error| classify(None, error))
    }

    /// Checks at start that the registry answers (it lists its subjects), so that a wrong URL,
    /// a registry that is down or refused credentials are reported before any record is read.
    pub async fn probe(&self) -> Result<(), RegistryError> {
        get_all_subjects(&self.settings).await.map(|_| ()).map_err(|error| classify(None, error))
    }

    /// Fetches the schema text registered under `id`.
    pub async fn fetch(&self, id: u32) -> Result<String, RegistryError> {
        get_schema_by_id(id, &self.settings).await.map(|registered| registered.schema).map_err(|error| classify(Some(id), error))
    }
}

/// The crate keeps the HTTP status only in its message ("... failed with status 404 Not Found");
/// a 404 on a lookup by id is the one permanent answer. The integration tests check this against
/// the real registry, so a change in the crate's wording fails a test instead of dead-lettering.
fn classify(id: Option<u32>, error: SRCError) -> RegistryError {
    let text = format!("{} ({})", error.error, error.cause.as_deref().unwrap_or("no cause"));
    match id {
        Some(id) if text.contains("status 404") => RegistryError::NotFound(id),
        _ => RegistryError::Unavailable(text),
    }
}
