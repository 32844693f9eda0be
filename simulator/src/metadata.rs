//! `/api/$metadata`: CSDL (OData 3.0) generated from the entity model, so
//! clients can check field names and types at start as they would
//! against the real server.

use std::fmt::Write;
use std::sync::LazyLock;

const NAMESPACE: &str = "FT.Domain.Models";

static XML: LazyLock<String> = LazyLock::new(build);

/// The document, built once.
pub fn metadata_xml() -> String {
    XML.clone()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn build() -> String {
    let sets = oda_model::entity::entity_sets();
    let mut xml = String::from(concat!(
        r#"<?xml version="1.0" encoding="utf-8"?>"#,
        r#"<edmx:Edmx Version="1.0" xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx">"#,
        r#"<edmx:DataServices m:DataServiceVersion="3.0" m:MaxDataServiceVersion="3.0" "#,
        r#"xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">"#,
    ));
    let _ = write!(
        xml,
        r#"<Schema Namespace="{NAMESPACE}" xmlns="http://schemas.microsoft.com/ado/2009/11/edm">"#
    );
    for set in sets {
        let _ = write!(xml, r#"<EntityType Name="{}"><Key>"#, escape(&set.name));
        for key in set.fields.iter().filter(|f| f.key) {
            let _ = write!(xml, r#"<PropertyRef Name="{}"/>"#, escape(&key.name));
        }
        xml.push_str("</Key>");
        for field in &set.fields {
            let _ = write!(
                xml,
                r#"<Property Name="{}" Type="{}" Nullable="{}"/>"#,
                escape(&field.name),
                field.edm.edm_name(),
                field.nullable
            );
        }
        for nav in &set.navigation {
            let _ = write!(
                xml,
                r#"<NavigationProperty Name="{name}" Relationship="{NAMESPACE}.{from}_{name}" ToRole="{to}" FromRole="{from}"/>"#,
                name = escape(&nav.name),
                from = escape(&set.name),
                to = escape(&nav.target),
            );
        }
        xml.push_str("</EntityType>");
    }
    xml.push_str("</Schema>");
    xml.push_str(
        r#"<Schema Namespace="Default" xmlns="http://schemas.microsoft.com/ado/2009/11/edm">"#,
    );
    xml.push_str(r#"<EntityContainer Name="Container" m:IsDefaultEntityContainer="true">"#);
    for set in sets {
        let _ = write!(
            xml,
            r#"<EntitySet Name="{name}" EntityType="{NAMESPACE}.{name}"/>"#,
            name = escape(&set.name)
        );
    }
    xml.push_str("</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_set_and_field_is_declared() {
        let xml = metadata_xml();
        for set in oda_model::entity::entity_sets() {
            assert!(
                xml.contains(&format!(r#"<EntitySet Name="{}""#, set.name)),
                "{}",
                set.name
            );
            for field in &set.fields {
                assert!(xml.contains(&format!(
                    r#"<Property Name="{}" Type="{}""#,
                    field.name,
                    field.edm.edm_name()
                )));
            }
        }
        assert!(xml.contains(r#"<Property Name="mødeid" Type="Edm.Int32" Nullable="false"/>"#));
    }

    /// What the producer checks at start: read as CSDL, the simulator's
    /// document declares every set of the model with exactly its fields.
    #[test]
    fn the_document_matches_the_model_as_the_producer_reads_it() {
        let entities: Vec<String> = oda_model::entity::entity_sets()
            .iter()
            .map(|e| e.name.clone())
            .collect();
        let xml = metadata_xml();
        let found = oda_model::csdl::differences(&xml, &entities).expect("well-formed XML");
        assert!(found.fields.is_empty(), "{:?}", found.fields);
        assert!(found.missing.is_empty(), "{:?}", found.missing);
        assert_eq!(oda_model::csdl::parse_csdl(&xml).expect("parses").len(), 50);
    }
}
