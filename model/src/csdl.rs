//! Reading a live `$metadata` document (OData CSDL) and comparing it with
//! the compiled-in entity model, so a renamed or retyped field is reported
//! in plain words before any record is read.

use std::collections::BTreeMap;

use crate::entity;

/// A document that is not XML (an error page, a proxy's answer) is an
/// error, never an empty model that would report every field as gone.
#[derive(Debug, thiserror::Error)]
#[error("the $metadata document is not well-formed XML: {0}")]
pub struct CsdlError(#[from] roxmltree::Error);

/// Entity types of a CSDL document: name → [(property, EDM type)], in
/// document order. Elements are matched by local name, so the EDM
/// namespace version (2007/2008/2009) does not matter.
pub fn parse_csdl(xml: &str) -> Result<BTreeMap<String, Vec<(String, String)>>, CsdlError> {
    let document = roxmltree::Document::parse(xml)?;
    let types = document
        .descendants()
        .filter(|node| node.has_tag_name("EntityType"))
        .filter_map(|node| {
            let name = node.attribute("Name")?;
            let properties = node
                .children()
                .filter(|child| child.has_tag_name("Property"))
                .filter_map(|p| {
                    Some((
                        p.attribute("Name")?.to_owned(),
                        p.attribute("Type")?.to_owned(),
                    ))
                })
                .collect();
            Some((name.to_owned(), properties))
        })
        .collect();
    Ok(types)
}

/// What differs between a live document and the model, for the given
/// entities.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Differences {
    /// One readable line per field that is new, gone or retyped.
    pub fields: Vec<String>,
    /// Entities the document does not declare at all.
    pub missing: Vec<String>,
}

/// Compares the document with the model for `entities`.
pub fn differences(xml: &str, entities: &[String]) -> Result<Differences, CsdlError> {
    let live = parse_csdl(xml)?;
    let mut out = Differences::default();
    for name in entities {
        let Some(expected) = entity::entity_set(name) else {
            continue;
        };
        let Some(actual) = live.get(name) else {
            out.missing.push(name.clone());
            continue;
        };
        for field in &expected.fields {
            let edm = field.edm.edm_name();
            match actual.iter().find(|(property, _)| *property == field.name) {
                None => out.fields.push(format!(
                    "{name}.{}: expected {edm}, the source no longer declares it (it will be null)",
                    field.name
                )),
                Some((_, ty)) if ty != edm => out.fields.push(format!(
                    "{name}.{}: expected {edm}, the source declares {ty}",
                    field.name
                )),
                Some(_) => {}
            }
        }
        for (property, ty) in actual {
            if expected.field(property).is_none() {
                out.fields.push(format!(
                    "{name}.{property}: new field of type {ty}, not in the compiled-in model"
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="1.0" xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx">
 <edmx:DataServices><Schema Namespace="OData.Models" xmlns="http://schemas.microsoft.com/ado/2009/11/edm">
  <EntityType Name="Sag"><Key><PropertyRef Name="id"/></Key>
   <Property Name="id" Type="Edm.Int32" Nullable="false"/>
   <Property Name="typeid" Type="Edm.String" Nullable="false"/>
   <Property Name="nyfelt" Type="Edm.Int32" Nullable="true"/>
   <NavigationProperty Name="Sagstrin" Relationship="OData.Models.Sag_Sagstrin" ToRole="Sagstrin" FromRole="Sag"/>
  </EntityType>
  <EntityType Name="Aktør"><Property Name="id" Type="Edm.Int32"/></EntityType>
 </Schema></edmx:DataServices></edmx:Edmx>"#;

    #[test]
    fn reports_retyped_vanished_new_and_missing() {
        let found = differences(XML, &["Sag".to_owned(), "Møde".to_owned()]).expect("parses");
        assert_eq!(found.missing, ["Møde"]);
        let lines = &found.fields;
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
    fn reads_attributes_in_any_order_and_quoting_and_skips_navigation() {
        let xml = r#"<Schema><EntityType Name='Stemme'>
            <Property Type='Edm.Int32' Name='id' Nullable='false'/>
            <Property Nullable="true" Type="Edm.DateTime" Name="opdateringsdato"></Property>
            <NavigationProperty Name="Afstemning" ToRole="Afstemning"/>
        </EntityType></Schema>"#;
        let types = parse_csdl(xml).expect("parses");
        assert_eq!(
            types["Stemme"],
            [
                ("id".to_owned(), "Edm.Int32".to_owned()),
                ("opdateringsdato".to_owned(), "Edm.DateTime".to_owned())
            ]
        );
    }

    #[test]
    fn a_document_that_is_not_xml_is_an_error_not_an_empty_model() {
        assert!(parse_csdl("<html><body>Service Unavailable").is_err());
        assert!(differences("{\"error\": 1}", &["Sag".to_owned()]).is_err());
    }
}
