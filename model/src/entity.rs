//! The ODA entity model, from the API's own `$metadata` (50 entity sets).
//!
//! The JSON copy lives in this crate (`oda-metadata.json`); it is compiled in so
//! every binary agrees on field names, types and nullability without a
//! network call, and the producer can still compare it with the live
//! `$metadata` at start.

use std::sync::LazyLock;

use serde::Deserialize;

const METADATA_JSON: &str = include_str!("../oda-metadata.json");

/// EDM primitive types that occur in ODA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum EdmType {
    #[serde(rename = "Edm.Int16")]
    Int16,
    #[serde(rename = "Edm.Int32")]
    Int32,
    #[serde(rename = "Edm.Boolean")]
    Boolean,
    #[serde(rename = "Edm.DateTime")]
    DateTime,
    #[serde(rename = "Edm.String")]
    String,
}

impl EdmType {
    /// The name as `$metadata` spells it.
    pub fn edm_name(self) -> &'static str {
        match self {
            EdmType::Int16 => "Edm.Int16",
            EdmType::Int32 => "Edm.Int32",
            EdmType::Boolean => "Edm.Boolean",
            EdmType::DateTime => "Edm.DateTime",
            EdmType::String => "Edm.String",
        }
    }
}

/// One property of an entity type.
#[derive(Debug, Clone, Deserialize)]
pub struct Field {
    pub name: String,
    pub edm: EdmType,
    pub nullable: bool,
    pub key: bool,
}

/// A navigation property (`$expand` target).
#[derive(Debug, Clone, Deserialize)]
pub struct Navigation {
    pub name: String,
    pub target: String,
}

/// One entity set with its type.
#[derive(Debug, Clone, Deserialize)]
pub struct EntitySet {
    #[serde(rename = "entity")]
    pub name: String,
    pub fields: Vec<Field>,
    pub navigation: Vec<Navigation>,
}

/// The five SQL views over `Sag`: same rows and ids as `Sag`, so capturing
/// them would publish every case twice.
pub const SAG_VIEWS: &[&str] = &["Aktstykke", "Almdel", "Debat", "EUsag", "Forslag"];

/// In `$metadata` but not served (404).
pub const NOT_SERVED: &[&str] = &["Sambehandlinger"];

impl EntitySet {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// A view over `Sag` rather than a table of its own.
    pub fn is_sag_view(&self) -> bool {
        SAG_VIEWS.contains(&self.name.as_str())
    }

    /// Captured by default: a real table that the API serves.
    pub fn is_captured_by_default(&self) -> bool {
        !self.is_sag_view() && !NOT_SERVED.contains(&self.name.as_str())
    }

    /// `opdateringsdato` may be null, so date filters cannot see every row.
    pub fn has_nullable_timestamp(&self) -> bool {
        self.field("opdateringsdato").is_some_and(|f| f.nullable)
    }
}

static ENTITY_SETS: LazyLock<Vec<EntitySet>> = LazyLock::new(|| {
    serde_json::from_str(METADATA_JSON)
        .unwrap_or_else(|e| panic!("oda-metadata.json is compiled in and must parse: {e}"))
});

/// All 50 entity sets of `$metadata`, in its order.
pub fn entity_sets() -> &'static [EntitySet] {
    &ENTITY_SETS
}

/// An entity set by its exact name.
pub fn entity_set(name: &str) -> Option<&'static EntitySet> {
    entity_sets().iter().find(|e| e.name == name)
}

/// An entity set by name, ignoring case (environment variable names lose it).
pub fn entity_set_ci(name: &str) -> Option<&'static EntitySet> {
    entity_set(name).or_else(|| {
        let lower = name.to_lowercase();
        entity_sets()
            .iter()
            .find(|e| e.name.to_lowercase() == lower)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_has_fifty_sets_each_with_id_and_timestamp() {
        assert_eq!(entity_sets().len(), 50);
        for set in entity_sets() {
            let id = set.field("id").expect("every set has id");
            assert!(id.key && id.edm == EdmType::Int32, "{}", set.name);
            let ts = set
                .field("opdateringsdato")
                .expect("every set has opdateringsdato");
            assert_eq!(ts.edm, EdmType::DateTime, "{}", set.name);
        }
    }

    #[test]
    fn default_capture_skips_views_and_unserved_sets() {
        let captured: Vec<_> = entity_sets()
            .iter()
            .filter(|e| e.is_captured_by_default())
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(captured.len(), 44);
        assert!(captured.contains(&"Sag") && captured.contains(&"Aktør"));
        assert!(!captured.contains(&"Forslag") && !captured.contains(&"Sambehandlinger"));
    }

    #[test]
    fn nullable_timestamps_are_the_three_spec_names() {
        let mut nullable: Vec<_> = entity_sets()
            .iter()
            .filter(|e| e.has_nullable_timestamp())
            .map(|e| e.name.as_str())
            .collect();
        nullable.sort_unstable();
        assert_eq!(
            nullable,
            [
                "Dagsordenspunkt",
                "EntitetBeskrivelse",
                "KolloneBeskrivelse"
            ]
        );
    }

    #[test]
    fn case_insensitive_lookup_restores_danish_spelling() {
        assert_eq!(
            entity_set_ci("aktør").map(|e| e.name.as_str()),
            Some("Aktør")
        );
        assert!(entity_set_ci("nope").is_none());
    }
}
