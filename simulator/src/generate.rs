//! The simulator's data: the real sample records first, then rows
//! generated deterministically from a seed up to the requested scale, with
//! realistic ids, foreign keys that point at existing rows, Danish text
//! with HTML, both `null` and `""`, and timestamps in Danish local time at
//! SQL Server precision, many of them shared by bursts of rows.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use oda_model::entity::{EdmType, EntitySet, Field};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::clock::local_time;
use crate::store::{Cell, Row, Store, Table};
use crate::time::{Precision, SimTime, UNITS_PER_SECOND};

/// The 2019 mirror's rows, compiled in (whose types
/// [`Table::row_from_json`] repairs); loaded after the exact API records of
/// [`oda_model::samples`].
const MIRROR_ROWS: &[(&str, &str)] = &[
    (
        "Afstemning",
        include_str!("../data/samples/from_sqlite_2019/Afstemning.json"),
    ),
    (
        "Afstemningstype",
        include_str!("../data/samples/from_sqlite_2019/Afstemningstype.json"),
    ),
    (
        "Aktør",
        include_str!("../data/samples/from_sqlite_2019/Aktør.json"),
    ),
    (
        "AktørAktørRolle",
        include_str!("../data/samples/from_sqlite_2019/AktørAktørRolle.json"),
    ),
    (
        "Aktørtype",
        include_str!("../data/samples/from_sqlite_2019/Aktørtype.json"),
    ),
    (
        "Sag",
        include_str!("../data/samples/from_sqlite_2019/Almdel.json"),
    ),
    (
        "Dagsordenspunkt",
        include_str!("../data/samples/from_sqlite_2019/Dagsordenspunkt.json"),
    ),
    (
        "DagsordenspunktDokument",
        include_str!("../data/samples/from_sqlite_2019/DagsordenspunktDokument.json"),
    ),
    (
        "DagsordenspunktSag",
        include_str!("../data/samples/from_sqlite_2019/DagsordenspunktSag.json"),
    ),
    (
        "Sag",
        include_str!("../data/samples/from_sqlite_2019/Debat.json"),
    ),
];

/// Fixed sizes of the lookup sets (real or close to real counts).
const LOOKUP_SIZES: &[(&str, usize)] = &[
    ("Afstemningstype", 4),
    ("Aktørtype", 12),
    ("AktørAktørRolle", 24),
    ("DokumentAktørRolle", 12),
    ("Dokumentkategori", 20),
    ("Dokumentstatus", 8),
    ("Dokumenttype", 40),
    ("Emneordstype", 6),
    ("Mødestatus", 6),
    ("Mødetype", 6),
    ("Periode", 160),
    ("SagAktørRolle", 24),
    ("SagDokumentRolle", 30),
    ("Sagskategori", 20),
    ("Sagsstatus", 80),
    ("Sagstrinsstatus", 40),
    ("Sagstrinstype", 60),
    ("SagstrinAktørRolle", 12),
    ("Sagstype", 14),
    ("Stemmetype", 4),
    ("EntitetBeskrivelse", 50),
    ("KolloneBeskrivelse", 420),
    ("Omtryk", 30),
];

/// Relative sizes of the big sets, after ODA's own proportions (Stemme is
/// most of the rows).
const WEIGHTS: &[(&str, u32)] = &[
    ("Stemme", 600),
    ("Dokument", 110),
    ("Fil", 110),
    ("SagDokument", 60),
    ("DokumentAktør", 60),
    ("EmneordDokument", 20),
    ("Sag", 32),
    ("Sagstrin", 32),
    ("SagAktør", 30),
    ("SagstrinDokument", 20),
    ("DagsordenspunktDokument", 8),
    ("Dagsordenspunkt", 8),
    ("DagsordenspunktSag", 5),
    ("EmneordSag", 8),
    ("Aktør", 6),
    ("AktørAktør", 6),
    ("SagstrinAktør", 6),
    ("Møde", 4),
    ("MødeAktør", 4),
    ("Afstemning", 3),
    ("Emneord", 3),
];

/// Settings of a data set.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub seed: u64,
    /// Total rows across every set.
    pub scale: usize,
    pub precision: Precision,
    /// The sim clock's start: generated timestamps lie before it.
    pub now: DateTime<Utc>,
}

/// Creates rows for a table: used for the initial data and for inserts.
#[derive(Debug)]
pub struct RowMaker {
    pub precision: Precision,
}

/// Where an `…id` field points.
pub fn foreign_key_target(entity: &str, field: &str) -> Option<&'static str> {
    if field == "id" {
        return None;
    }
    let base = field.strip_suffix("id")?;
    let sets = oda_model::entity::entity_sets();
    let find = |name: &str| {
        sets.iter().find(|e| {
            e.name.eq_ignore_ascii_case(name) || e.name.to_lowercase() == name.to_lowercase()
        })
    };
    let special = match base {
        "fraaktør" | "tilaktør" => Some("Aktør"),
        "super" => Some(entity),
        "fremsatundersag" | "deltundersag" => Some("Sag"),
        "spørgsmåls" => Some("Dokument"),
        "førstesagstrin" => Some("Sagstrin"),
        _ => None,
    };
    if let Some(name) = special {
        return find(name).map(|e| e.name.as_str());
    }
    if matches!(base, "type" | "status" | "kategori" | "rolle") {
        let suffix = match base {
            "rolle" => "Rolle".to_owned(),
            other => other.to_owned(),
        };
        for candidate in [format!("{entity}{suffix}"), format!("{entity}s{suffix}")] {
            if let Some(e) = find(&candidate) {
                return Some(e.name.as_str());
            }
        }
        return None;
    }
    find(base).map(|e| e.name.as_str())
}

fn is_lookup(set: &EntitySet) -> bool {
    LOOKUP_SIZES.iter().any(|(name, _)| *name == set.name)
}

const WORDS: &[&str] = &[
    "forslag",
    "til",
    "lov",
    "om",
    "ændring",
    "af",
    "folketingets",
    "forretningsorden",
    "beslutning",
    "skat",
    "forsvar",
    "klima",
    "energi",
    "sundhed",
    "børn",
    "uddannelse",
    "landbrug",
    "miljø",
    "ældre",
    "kommuner",
    "regioner",
    "grønland",
    "færøerne",
    "udlændinge",
    "integration",
    "retsplejeloven",
    "straffeloven",
    "momsloven",
    "afgifter",
    "tilskud",
    "pension",
    "boliger",
    "trafik",
    "jernbane",
    "Øresund",
    "samarbejde",
    "forsvarssamarbejde",
    "EU",
    "NATO",
    "minister",
    "udvalg",
    "betænkning",
];

const FIRST_NAMES: &[&str] = &[
    "Mette", "Jakob", "Pia", "Lars", "Søren", "Pernille", "Morten", "Ida", "Åse", "Bjørn",
];
const LAST_NAMES: &[&str] = &[
    "Frederiksen",
    "Ellemann-Jensen",
    "Kjærsgaard",
    "Løkke Rasmussen",
    "Pape Poulsen",
    "Sørensen",
    "Nørgaard",
    "Ærø",
];
const LOOKUP_WORDS: &[&str] = &[
    "Lovforslag",
    "Beslutningsforslag",
    "Forespørgsel",
    "Alm. del",
    "Aktstykke",
    "Fremsat",
    "Vedtaget",
    "Forkastet",
    "Afsluttet",
    "Medlem",
    "Formand",
    "Næstformand",
    "Stiller",
    "Minister",
    "Ordfører",
    "For",
    "Imod",
    "Fravær",
    "Hverken for eller imod",
    "Endelig vedtagelse",
    "Ændringsforslag",
];

impl RowMaker {
    fn sentence(rng: &mut StdRng, words: std::ops::Range<usize>) -> String {
        let words = rng.random_range(words);
        let mut out = String::new();
        for i in 0..words {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        }
        if let Some(first) = out.get(..1) {
            let upper = first.to_uppercase();
            out.replace_range(..1, &upper);
        }
        out
    }

    fn text_for(rng: &mut StdRng, set: &EntitySet, field: &Field, id: i32) -> String {
        let name = field.name.as_str();
        match name {
            "titel" | "titelkort" | "spørgsmålstitel" | "emneord" | "kommentar" | "note" => {
                Self::sentence(rng, 3..12)
            }
            "resume"
            | "biografi"
            | "spørgsmålsordlyd"
            | "konklusion"
            | "afstemningskonklusion"
            | "baggrundsmateriale"
            | "beskrivelse"
            | "begrundelse"
            | "kørebemærkning"
            | "forhandling" => {
                let paragraphs = rng.random_range(1..4);
                (0..paragraphs)
                    .map(|_| format!("<p>{}.</p>", Self::sentence(rng, 8..30)))
                    .collect()
            }
            "navn" => format!(
                "{} {}",
                FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())],
                LAST_NAMES[rng.random_range(0..LAST_NAMES.len())]
            ),
            "fornavn" => FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())].to_owned(),
            "efternavn" => LAST_NAMES[rng.random_range(0..LAST_NAMES.len())].to_owned(),
            "gruppenavnkort" => [
                "S", "V", "DF", "SF", "EL", "KF", "LA", "RV", "ALT", "M", "DD",
            ][rng.random_range(0..11)]
            .to_owned(),
            "nummer" => format!(
                "{} {}",
                ["L", "B", "F", "V", "R"][rng.random_range(0..5)],
                rng.random_range(1..250)
            ),
            "nummerprefix" => ["L", "B", "F", "V", "R"][rng.random_range(0..5)].to_owned(),
            "nummernumerisk" => rng.random_range(1..999).to_string(),
            "nummerpostfix" => ["", "A", "B"][rng.random_range(0..3)].to_owned(),
            "offentlighedskode" => "O".to_owned(),
            "filurl" => format!(
                "https://www.ft.dk/samling/20231/lovforslag/l{id}/20231_l{id}_som_fremsat.pdf"
            ),
            "format" => ["PDF", "DOCX", "HTML"][rng.random_range(0..3)].to_owned(),
            "variantkode" => ["P", "F", "U"][rng.random_range(0..3)].to_owned(),
            "retsinformationsurl" => format!("https://www.retsinformation.dk/eli/lta/2024/{id}"),
            "lovnummer" => rng.random_range(1..2000).to_string(),
            "entitetnavn" => oda_model::entity::entity_sets()[id.unsigned_abs() as usize % 50]
                .name
                .clone(),
            "kollonenavn" => format!("felt{}", id % 30),
            // The vote types every source agrees on (ODA_API §2.1).
            "type" if set.name == "Stemmetype" => match id {
                1 => "For",
                2 => "Imod",
                3 => "Fravær",
                4 => "Hverken for eller imod",
                _ => "Ukendt",
            }
            .to_owned(),
            "type" | "status" | "rolle" | "kategori" => {
                format!(
                    "{} {}",
                    LOOKUP_WORDS[id.unsigned_abs() as usize % LOOKUP_WORDS.len()],
                    id
                )
            }
            "kode" => format!("{}{}", &set.name[..1], id),
            "paragraf" | "paragrafnummer" => format!("§ {}", rng.random_range(1..80)),
            _ => Self::sentence(rng, 1..4),
        }
    }

    /// A generated row for `set` with foreign keys drawn from `store`.
    pub fn make(
        &self,
        rng: &mut StdRng,
        store: &Store,
        set: &EntitySet,
        id: i32,
        stamp: SimTime,
        years: (i32, i32),
    ) -> Row {
        let mut cells = Vec::with_capacity(set.fields.len());
        for field in &set.fields {
            let cell = if field.name == "id" {
                Cell::Int(id)
            } else if field.name == oda_model::hash::TIMESTAMP_FIELD {
                // Where `$metadata` allows it, some rows carry no timestamp:
                // only a full sweep ever sees their changes.
                if field.nullable && rng.random_ratio(1, 10) {
                    Cell::Null
                } else {
                    Cell::Time(stamp)
                }
            } else {
                self.value(rng, store, set, field, id, years)
            };
            cells.push(cell);
        }
        Row {
            cells: cells.into_boxed_slice(),
        }
    }

    /// A fresh value for one field (also what an update writes).
    pub fn value(
        &self,
        rng: &mut StdRng,
        store: &Store,
        set: &EntitySet,
        field: &Field,
        id: i32,
        years: (i32, i32),
    ) -> Cell {
        if field.nullable && rng.random_ratio(1, 7) {
            return Cell::Null;
        }
        match field.edm {
            EdmType::Int16 | EdmType::Int32 => {
                if let Some(target) = foreign_key_target(&set.name, &field.name) {
                    match store.table(target).filter(|t| !t.is_empty()) {
                        Some(table) => Cell::Int(table.random_id(rng).unwrap_or(1)),
                        None if field.nullable => Cell::Null,
                        None => Cell::Int(1),
                    }
                } else if field.edm == EdmType::Int16 {
                    Cell::Int(rng.random_range(1..30))
                } else {
                    Cell::Int(rng.random_range(1..500))
                }
            }
            EdmType::Boolean => Cell::Bool(rng.random_bool(0.5)),
            EdmType::DateTime => {
                let (from, to) = years;
                let year = rng.random_range(from..=to);
                let day = rng.random_range(1..=28);
                let month = rng.random_range(1..=12);
                let date_only = field.name.contains("dato") && !field.name.contains("frigivelses");
                let text = if date_only {
                    format!("{year:04}-{month:02}-{day:02}T00:00:00")
                } else {
                    format!(
                        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:00",
                        rng.random_range(8..18),
                        rng.random_range(0..60)
                    )
                };
                SimTime::parse(&text).map_or(Cell::Null, Cell::Time)
            }
            EdmType::String => {
                // Both kinds of "nothing" occur in real data for the same field.
                if field.nullable && rng.random_ratio(1, 12) {
                    Cell::Str("".into())
                } else {
                    Cell::Str(Self::text_for(rng, set, field, id).into())
                }
            }
        }
    }
}

/// Sets in an order where every foreign key's target comes first.
fn creation_order() -> Vec<&'static EntitySet> {
    let sets: Vec<&'static EntitySet> = oda_model::entity::entity_sets()
        .iter()
        .filter(|s| !s.is_sag_view())
        .collect();
    let mut done: Vec<&'static EntitySet> = Vec::new();
    let mut pending = sets;
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|set| {
            let ready = set
                .fields
                .iter()
                .all(|f| match foreign_key_target(&set.name, &f.name) {
                    None => true,
                    Some(target) => target == set.name || done.iter().any(|d| d.name == target),
                });
            if ready {
                done.push(set);
            }
            !ready
        });
        if pending.len() == before {
            // A cycle: take the rest as they come (their keys may be null).
            done.append(&mut pending);
        }
    }
    done
}

/// Fills the store: samples, lookups, then the weighted big sets.
pub fn populate(store: &mut Store, config: &GenConfig) {
    let mut rng = StdRng::seed_from_u64(config.seed);
    load_samples(store, config.precision);
    let maker = RowMaker {
        precision: config.precision,
    };
    let lookup_total: usize = LOOKUP_SIZES.iter().map(|(_, n)| n).sum();
    let remaining = config.scale.saturating_sub(lookup_total);
    let weight_total: u32 = WEIGHTS.iter().map(|(_, w)| w).sum();
    let now = local_time(config.now, config.precision);
    let start = SimTime::parse("2014-01-01T08:00:00").unwrap_or(now);
    let years = (2014, chrono::Datelike::year(&config.now.date_naive()));
    for set in creation_order() {
        let target = if let Some((_, n)) = LOOKUP_SIZES.iter().find(|(name, _)| *name == set.name) {
            *n
        } else if let Some((_, w)) = WEIGHTS.iter().find(|(name, _)| *name == set.name) {
            ((remaining as u64 * u64::from(*w)) / u64::from(weight_total)).max(5) as usize
        } else {
            // Sets the proportions do not name (Sambehandlinger…): a handful.
            5
        };
        let Some(existing) = store.table(&set.name).map(Table::len) else {
            continue;
        };
        let mut next_id = store
            .table(&set.name)
            .map_or(1, |t| t.max_id() + 1)
            .max(first_id(set));
        let mut made = existing;
        let mut rows = Vec::new();
        let mut stamps = Stamps::new(
            start,
            now,
            config.precision,
            target.saturating_sub(existing),
        );
        while made < target {
            let stamp = stamps.next(&mut rng);
            rows.push((
                next_id,
                maker.make(&mut rng, store, set, next_id, stamp, years),
            ));
            next_id += if is_lookup(set) {
                1
            } else {
                rng.random_range(1..3)
            };
            made += 1;
            // Keep foreign keys inside the set resolvable while generating.
            if rows.len() >= 4096 {
                flush(store, &set.name, &mut rows);
            }
        }
        flush(store, &set.name, &mut rows);
    }
}

fn flush(store: &mut Store, name: &str, rows: &mut Vec<(i32, Row)>) {
    if let Some(table) = store.table_mut(name) {
        for (id, row) in rows.drain(..) {
            table.put(id, row);
        }
    }
}

/// Real ids start high for the big sets (Sag ids reach ~105,000).
fn first_id(set: &EntitySet) -> i32 {
    if is_lookup(set) { 1 } else { 1000 }
}

/// Timestamps for the initial data: increasing over the years, with bursts
/// of rows sharing one value (up to 150, more than a page).
struct Stamps {
    current: SimTime,
    end: SimTime,
    precision: Precision,
    burst_left: u32,
    /// Mean distance between stamps, so `count` rows span the years.
    mean_step: i64,
}

impl Stamps {
    fn new(start: SimTime, end: SimTime, precision: Precision, count: usize) -> Self {
        let span = (end.0 - start.0).max(UNITS_PER_SECOND);
        Self {
            current: start,
            end,
            precision,
            burst_left: 0,
            mean_step: (span / i64::try_from(count.max(1)).unwrap_or(i64::MAX)).max(1),
        }
    }

    fn next(&mut self, rng: &mut StdRng) -> SimTime {
        if self.burst_left > 0 {
            self.burst_left -= 1;
            return self.current;
        }
        if rng.random_ratio(1, 200) {
            self.burst_left = rng.random_range(20..150);
        }
        let step = rng.random_range(1..=self.mean_step * 2);
        // Never past the clock's start: the initial data is history.
        let next = SimTime((self.current.0 + step).min(self.end.0));
        self.current = self.precision.quantize(next);
        self.current
    }
}

fn load_samples(store: &mut Store, precision: Precision) {
    let api = oda_model::samples::ALL
        .iter()
        .filter(|(_, file, _)| !file.contains(".partial."))
        .map(|(entity, _, text)| (*entity, *text));
    for (entity, text) in api.chain(MIRROR_ROWS.iter().copied()) {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        let records = match value {
            Value::Array(items) => items,
            other => vec![other],
        };
        let Some(table) = store.table_mut(entity) else {
            continue;
        };
        for record in records {
            let Value::Object(map) = record else { continue };
            if let Some((id, mut row)) = table.row_from_json(&map) {
                if table.get(id).is_some() {
                    // The exact API capture comes first and wins.
                    continue;
                }
                for cell in row.cells.iter_mut() {
                    if let Cell::Time(t) = cell {
                        *t = precision.quantize(*t);
                    }
                }
                table.put(id, row);
            }
        }
    }
}

/// Row counts per set, for `/_sim/stats`.
pub fn row_counts(store: &Store) -> BTreeMap<String, usize> {
    store
        .tables
        .iter()
        .map(|(name, t)| (name.clone(), t.len()))
        .collect()
}
