//! Real ODA records, as the API (or its documentation) gave them, compiled
//! in. They are the ground the simulator generates from and the fixtures
//! the codec is tested and benchmarked on; provenance is in
//! `samples/SOURCES.md`.

/// `(entity set, file name, JSON text)` of every sample: an array of
/// records or one record. `*.partial.json` files lack or abbreviate values.
pub const ALL: &[(&str, &str, &str)] = &[
    (
        "Afstemning",
        "Afstemning.json",
        include_str!("../samples/Afstemning.json"),
    ),
    (
        "Afstemning",
        "Afstemning.partial.json",
        include_str!("../samples/Afstemning.partial.json"),
    ),
    ("Aktør", "Aktør.json", include_str!("../samples/Aktør.json")),
    (
        "Aktør",
        "Aktør.partial.json",
        include_str!("../samples/Aktør.partial.json"),
    ),
    (
        "Dokument",
        "Dokument.partial.json",
        include_str!("../samples/Dokument.partial.json"),
    ),
    ("Sag", "Sag.json", include_str!("../samples/Sag.json")),
    (
        "Sag",
        "Sag.partial.json",
        include_str!("../samples/Sag.partial.json"),
    ),
    (
        "Sagstrin",
        "Sagstrin.json",
        include_str!("../samples/Sagstrin.json"),
    ),
    (
        "Stemme",
        "Stemme.json",
        include_str!("../samples/Stemme.json"),
    ),
];

/// The complete (not partial) sample of an entity set, if there is one.
pub fn complete(entity: &str) -> Option<&'static str> {
    ALL.iter()
        .find(|(set, file, _)| *set == entity && !file.contains(".partial."))
        .map(|(_, _, text)| *text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_is_json_of_a_set_in_the_model() {
        for (set, file, text) in ALL {
            assert!(crate::entity::entity_set(set).is_some(), "{file}");
            let value: serde_json::Value =
                serde_json::from_str(text).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(value.is_array() || value.is_object(), "{file}");
        }
        let sag: serde_json::Value =
            serde_json::from_str(complete("Sag").expect("a Sag sample")).expect("JSON");
        assert!(sag[0].get("afgørelsesdato").is_some(), "Danish names kept");
        assert!(complete("Dokument").is_none());
    }
}
