//! The policy catalog: owner, description, severity override and compliance controls per policy,
//! from a TOML file (`config/policies.toml` is an example). Parsing is pure; the shell reads the
//! file and swaps in a new catalog when it changes.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::model::PolicyMeta;

/// Policies by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyCatalog {
    policies: HashMap<String, Arc<PolicyMeta>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    policies: HashMap<String, PolicyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyEntry {
    owner: Option<String>,
    description: Option<String>,
    severity: Option<u8>,
    #[serde(default)]
    compliance: Vec<String>,
}

impl PolicyCatalog {
    /// Parses catalog TOML: a `[policies."<name>"]` table per policy with optional `owner`,
    /// `description`, `severity` (0–10) and `compliance` (a list of control ids).
    pub fn parse(text: &str) -> Result<PolicyCatalog, String> {
        let file: CatalogFile = toml::from_str(text).map_err(|error| error.to_string().trim_end().to_owned())?;
        let mut policies = HashMap::with_capacity(file.policies.len());
        for (name, entry) in file.policies {
            if let Some(severity) = entry.severity.filter(|s| *s > 10) {
                return Err(format!("policies.\"{name}\".severity: {severity} is outside the 0-10 scale"));
            }
            let meta =
                PolicyMeta { owner: entry.owner, description: entry.description, severity: entry.severity, compliance: entry.compliance };
            policies.insert(name, Arc::new(meta));
        }
        Ok(PolicyCatalog { policies })
    }

    /// The entry of `policy`, if the catalog has one.
    pub fn get(&self, policy: &str) -> Option<&Arc<PolicyMeta>> {
        self.policies.get(policy)
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_example_catalog() {
        let catalog = PolicyCatalog::parse(include_str!("../../../config/policies.toml")).unwrap();
        let meta = catalog.get("prod-billing-deploy-v3").unwrap();
        assert_eq!(meta.owner.as_deref(), Some("payments-platform"));
        assert!(meta.compliance.iter().any(|c| c.starts_with("PCI-DSS")));
        assert!(catalog.get("nope").is_none());
    }

    #[test]
    fn rejects_bad_entries_with_their_path() {
        let error = PolicyCatalog::parse("[policies.p]\nseverity = 11\n").unwrap_err();
        assert_eq!(error, "policies.\"p\".severity: 11 is outside the 0-10 scale");
        let error = PolicyCatalog::parse("[policies.p]\nowner = 3\n").unwrap_err();
        assert!(error.contains("owner"), "{error}");
        let error = PolicyCatalog::parse("[policies.p]\nownr = \"x\"\n").unwrap_err();
        assert!(error.contains("unknown field `ownr`"), "{error}");
    }
}
