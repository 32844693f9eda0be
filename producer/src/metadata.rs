//! Comparing the compiled-in entity model with the source's own
//! `$metadata` at start, so a renamed or retyped field is reported in
//! plain words before any record is read.

use std::collections::BTreeMap;

use oda_cdc_core::model;

/// Entity types of a CSDL document: name → [(property, EDM type)].
pub fn parse_csdl(xml: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut types = BTreeMap::new();
    for chunk in xml.split("<EntityType ").skip(1) {
        let Some(name) = attribute(chunk, "Name") else {
            continue;
        };
        let body = chunk.split("</EntityType>").next().unwrap_or(chunk);
        let properties = body
            .split("<Property ")
            .skip(1)
            .filter_map(|p| Some((attribute(p, "Name")?, attribute(p, "Type")?)))
            .collect();
        types.insert(name, properties);
    }
    types
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = tag[start..].find('"')? + start;
    Some(tag[start..end].to_owned())
}

/// Differences for the given entities, one readable line each; entities
/// the source does not declare at all come back separately.
pub fn differences(xml: &str, entities: &[String]) -> (Vec<String>, Vec<String>) {
    let live = parse_csdl(xml);
    let mut lines = Vec::new();
    let mut missing = Vec::new();
    for entity in entities {
        let Some(expected) = model::entity_set(entity) else {
            continue;
        };
        let Some(actual) = live.get(entity) else {
            missing.push(entity.clone());
            continue;
        };
        for field in &expected.fields {
            match actual.iter().find(|(name, _)| *name == field.name) {
                None => lines.push(format!(
                    "{entity}.{}: expected {}, the source no longer declares it (it will be null)",
                    field.name,
                    field.edm.edm_name()
                )),
                Some((_, ty)) if ty != field.edm.edm_name() => lines.push(format!(
                    "{entity}.{}: expected {}, the source declares {ty}",
                    field.name,
                    field.edm.edm_name()
                )),
                Some(_) => {}
            }
        }
        for (name, ty) in actual {
            if expected.field(name).is_none() {
                lines.push(format!(
                    "{entity}.{name}: new field of type {ty}, not in the compiled-in model"
                ));
            }
        }
    }
    (lines, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<Schema><EntityType Name="Sag"><Key><PropertyRef Name="id"/></Key>
        <Property Name="id" Type="Edm.Int32" Nullable="false"/>
        <Property Name="typeid" Type="Edm.String" Nullable="false"/>
        <Property Name="nyfelt" Type="Edm.Int32" Nullable="true"/>
        </EntityType><EntityType Name="Aktør"><Property Name="id" Type="Edm.Int32"/></EntityType></Schema>"#;

    #[test]
    fn reports_retyped_vanished_new_and_missing() {
        let (lines, missing) = differences(XML, &["Sag".to_owned(), "Møde".to_owned()]);
        assert_eq!(missing, ["Møde"]);
        assert!(
            lines.contains(
                &"Sag.typeid: expected Edm.Int32, the source declares Edm.String".to_owned()
            ),
            "{lines:?}"
        );
        assert!(lines.iter().any(|l| {
            l.starts_with("Sag.titel: expected Edm.String, the source no longer declares it")
        }));
        assert!(lines.contains(
            &"Sag.nyfelt: new field of type Edm.Int32, not in the compiled-in model".to_owned()
        ));
    }

    #[test]
    fn the_simulators_metadata_document_matches_the_model() {
        let entities: Vec<String> = model::entity_sets()
            .iter()
            .map(|e| e.name.clone())
            .collect();
        let (lines, missing) = differences(&oda_sim::metadata::metadata_xml(), &entities);
        assert!(lines.is_empty(), "{lines:?}");
        assert!(missing.is_empty(), "{missing:?}");
        assert_eq!(parse_csdl(&oda_sim::metadata::metadata_xml()).len(), 50);
    }
}
