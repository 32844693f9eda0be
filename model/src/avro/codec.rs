//! JSON records and change events to Avro values and back.
//!
//! The encoders check every value against the model (type, range,
//! nullability) and name the entity, field and value when one does not fit,
//! so the producer can dead-letter that record instead of failing a batch
//! inside the Avro writer with a message that names neither.

use std::collections::{BTreeMap, HashMap};

use apache_avro::types::Value as Avro;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value as Json};

use super::{AvroError, avro_name, is_nullable};
use crate::entity::{EdmType, EntitySet, Field};
use crate::event::{ChangeEvent, Op, Source};

/// An entity record as an Avro value, and what its schema could not hold.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedRecord {
    /// A `Value::Record` with the Avro field names, in schema order.
    pub value: Avro,
    /// contract.md#change-event `extra`: the JSON record's fields the schema does not know,
    /// name (ODA's spelling) → JSON text; never dropped silently.
    pub extra: BTreeMap<String, String>,
}

/// A JSON record with ODA's field names → the entity's Avro record.
///
/// A field the model does not know goes to [`EncodedRecord::extra`]; a
/// missing field is encoded as null (an error if the field is not
/// nullable); a value of the wrong JSON type or out of the EDM type's range
/// is [`AvroError::WrongType`].
pub fn record_to_avro(
    set: &EntitySet,
    record: &Map<String, Json>,
) -> Result<EncodedRecord, AvroError> {
    let fields = set
        .fields
        .iter()
        .map(|field| {
            let value = field_to_avro(set, field, record.get(&field.name))?;
            Ok((avro_name(&field.name), value))
        })
        .collect::<Result<Vec<_>, AvroError>>()?;
    let extra = record
        .iter()
        .filter(|(name, _)| set.field(name).is_none())
        .map(|(name, value)| (name.clone(), value.to_string()))
        .collect();
    Ok(EncodedRecord {
        value: Avro::Record(fields),
        extra,
    })
}

fn field_to_avro(set: &EntitySet, field: &Field, value: Option<&Json>) -> Result<Avro, AvroError> {
    let nullable = is_nullable(field);
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return if nullable {
            Ok(Avro::Union(0, Box::new(Avro::Null)))
        } else {
            Err(AvroError::NullNotAllowed {
                entity: set.name.clone(),
                field: field.name.clone(),
            })
        };
    };
    let wrong = |expected: &'static str| AvroError::WrongType {
        entity: set.name.clone(),
        field: field.name.clone(),
        expected,
        value: value.to_string(),
    };
    let inner = match field.edm {
        EdmType::Int16 => value
            .as_i64()
            .and_then(|n| i16::try_from(n).ok())
            .map(|n| Avro::Int(n.into()))
            .ok_or_else(|| wrong("an Edm.Int16 integer"))?,
        EdmType::Int32 => value
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map(Avro::Int)
            .ok_or_else(|| wrong("an Edm.Int32 integer"))?,
        EdmType::Boolean => value
            .as_bool()
            .map(Avro::Boolean)
            .ok_or_else(|| wrong("a boolean"))?,
        // The literal is kept as it is, not validated: it is the source's
        // own truth, the JSON format carries it unchecked too, and a format
        // ODA has not used yet should not dead-letter a record.
        EdmType::DateTime => value
            .as_str()
            .map(|s| Avro::String(s.to_owned()))
            .ok_or_else(|| wrong("an Edm.DateTime literal string"))?,
        EdmType::String => value
            .as_str()
            .map(|s| Avro::String(s.to_owned()))
            .ok_or_else(|| wrong("a string"))?,
    };
    Ok(if nullable {
        Avro::Union(1, Box::new(inner))
    } else {
        inner
    })
}

/// An entity's Avro record (bare or as the non-null branch of a union) →
/// the JSON record with ODA's field names and JSON types.
///
/// Names map back through the model, never by undoing the
/// transliteration. A model field the record lacks (written with an older
/// schema and read without a reader schema) comes back as null; an Avro
/// field the model lacks is an error rather than a silent drop.
pub fn avro_to_record(set: &EntitySet, value: &Avro) -> Result<Map<String, Json>, AvroError> {
    let Avro::Record(fields) = unwrap_union(value) else {
        return Err(shape(format!("{} record", set.name), value));
    };
    let mut out = Map::new();
    for (position, (name, value)) in fields.iter().enumerate() {
        // Records normally arrive in schema order, so try that slot first.
        let field = set
            .fields
            .get(position)
            .filter(|f| is_avro_spelling(&f.name, name))
            .or_else(|| set.fields.iter().find(|f| is_avro_spelling(&f.name, name)))
            .ok_or_else(|| AvroError::UnknownAvroField {
                entity: set.name.clone(),
                field: name.clone(),
            })?;
        out.insert(field.name.clone(), field_from_avro(set, field, value)?);
    }
    for field in &set.fields {
        out.entry(field.name.clone()).or_insert(Json::Null);
    }
    Ok(out)
}

fn field_from_avro(set: &EntitySet, field: &Field, value: &Avro) -> Result<Json, AvroError> {
    let edm = field.edm;
    match (unwrap_union(value), edm) {
        (Avro::Null, _) => Ok(Json::Null),
        (Avro::Int(n), EdmType::Int16 | EdmType::Int32) => Ok(Json::from(*n)),
        // A later schema may widen to long; Avro promotes int to long.
        (Avro::Long(n), EdmType::Int16 | EdmType::Int32) => Ok(Json::from(*n)),
        (Avro::Boolean(b), EdmType::Boolean) => Ok(Json::Bool(*b)),
        (Avro::String(s), EdmType::DateTime | EdmType::String) => Ok(Json::String(s.clone())),
        (other, _) => Err(shape(format!("{}.{}", set.name, field.name), other)),
    }
}

/// `avro_name(oda) == avro` without allocating: decoding compares every
/// field name of every record.
fn is_avro_spelling(oda: &str, avro: &str) -> bool {
    let mut rest = avro.as_bytes();
    for c in oda.chars() {
        let mut buf = [0u8; 4];
        let expected: &[u8] = match c {
            'æ' => b"ae",
            'ø' => b"oe",
            'å' => b"aa",
            'Æ' => b"Ae",
            'Ø' => b"Oe",
            'Å' => b"Aa",
            other => other.encode_utf8(&mut buf).as_bytes(),
        };
        match rest.strip_prefix(expected) {
            Some(tail) => rest = tail,
            None => return false,
        }
    }
    rest.is_empty()
}

fn unwrap_union(value: &Avro) -> &Avro {
    match value {
        Avro::Union(_, inner) => unwrap_union(inner),
        other => other,
    }
}

fn shape(context: String, value: &Avro) -> AvroError {
    AvroError::Shape {
        context,
        value: format!("{value:?}"),
    }
}

fn op_index(op: Op) -> u32 {
    match op {
        Op::Read => 0,
        Op::Create => 1,
        Op::Update => 2,
        Op::Delete => 3,
    }
}

fn op_from_symbol(symbol: &str) -> Option<Op> {
    match symbol {
        "r" => Some(Op::Read),
        "c" => Some(Op::Create),
        "u" => Some(Op::Update),
        "d" => Some(Op::Delete),
        _ => None,
    }
}

fn to_millis(field: &'static str, rfc3339: &str) -> Result<i64, AvroError> {
    DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp_millis())
        .map_err(|_| AvroError::Timestamp {
            field,
            value: rfc3339.to_owned(),
        })
}

/// The JSON event's form: RFC 3339, milliseconds, `Z`.
fn from_millis(field: &str, millis: i64) -> Result<String, AvroError> {
    DateTime::<Utc>::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .ok_or_else(|| shape(field.to_owned(), &Avro::TimestampMillis(millis)))
}

fn nullable(value: Option<Avro>) -> Avro {
    match value {
        None => Avro::Union(0, Box::new(Avro::Null)),
        Some(v) => Avro::Union(1, Box::new(v)),
    }
}

/// The JSON change event → the value of `dk.ft.oda.ChangeEvent<Entity>`.
///
/// `after`'s unknown fields and the event's own `extra` (values as JSON
/// text) become the Avro `extra` map; the RFC 3339 times become
/// `timestamp-millis`.
pub fn event_to_avro(event: &ChangeEvent, set: &EntitySet) -> Result<Avro, AvroError> {
    if event.entity != set.name {
        return Err(AvroError::EntityMismatch {
            event: event.entity.clone(),
            schema: set.name.clone(),
        });
    }
    let mut extra: HashMap<String, Avro> = event
        .extra
        .iter()
        .map(|(name, value)| (name.clone(), Avro::String(value.to_string())))
        .collect();
    let after = match &event.after {
        None => nullable(None),
        Some(record) => {
            let encoded = record_to_avro(set, record)?;
            extra.extend(
                encoded
                    .extra
                    .into_iter()
                    .map(|(name, text)| (name, Avro::String(text))),
            );
            nullable(Some(encoded.value))
        }
    };
    let s = &event.source;
    let utc = s
        .opdateringsdato_utc
        .as_deref()
        .map(|t| to_millis("source.opdateringsdato_utc", t))
        .transpose()?;
    let source = Avro::Record(vec![
        ("system".into(), Avro::String(s.system.clone())),
        ("base_url".into(), Avro::String(s.base_url.clone())),
        (
            "opdateringsdato".into(),
            nullable(s.opdateringsdato.clone().map(Avro::String)),
        ),
        (
            "opdateringsdato_utc".into(),
            nullable(utc.map(Avro::TimestampMillis)),
        ),
        (
            "polled_at".into(),
            Avro::TimestampMillis(to_millis("source.polled_at", &s.polled_at)?),
        ),
        ("snapshot".into(), Avro::Boolean(s.snapshot)),
    ]);
    let op = event.op;
    Ok(Avro::Record(vec![
        ("op".into(), Avro::Enum(op_index(op), op.code().to_owned())),
        ("entity".into(), Avro::String(event.entity.clone())),
        ("id".into(), Avro::Long(event.id)),
        ("ts_ms".into(), Avro::Long(event.ts_ms)),
        ("source".into(), source),
        ("after".into(), after),
        ("extra".into(), Avro::Map(extra)),
    ]))
}

/// Fields of a decoded record by name.
struct Fields<'a> {
    context: &'static str,
    fields: &'a [(String, Avro)],
}

impl<'a> Fields<'a> {
    fn of(context: &'static str, value: &'a Avro) -> Result<Self, AvroError> {
        match unwrap_union(value) {
            Avro::Record(fields) => Ok(Self { context, fields }),
            other => Err(shape(context.to_owned(), other)),
        }
    }

    fn get(&self, name: &str) -> Result<&'a Avro, AvroError> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| unwrap_union(v))
            .ok_or_else(|| AvroError::Shape {
                context: format!("{}.{name}", self.context),
                value: "(missing)".into(),
            })
    }

    fn string(&self, name: &str) -> Result<String, AvroError> {
        match self.get(name)? {
            Avro::String(s) | Avro::Enum(_, s) => Ok(s.clone()),
            other => Err(shape(format!("{}.{name}", self.context), other)),
        }
    }

    fn opt_string(&self, name: &str) -> Result<Option<String>, AvroError> {
        match self.get(name)? {
            Avro::Null => Ok(None),
            _ => self.string(name).map(Some),
        }
    }

    fn long(&self, name: &str) -> Result<i64, AvroError> {
        match self.get(name)? {
            Avro::Long(n) | Avro::TimestampMillis(n) => Ok(*n),
            Avro::Int(n) => Ok(i64::from(*n)),
            other => Err(shape(format!("{}.{name}", self.context), other)),
        }
    }

    fn time(&self, name: &str) -> Result<Option<String>, AvroError> {
        match self.get(name)? {
            Avro::Null => Ok(None),
            _ => from_millis(name, self.long(name)?).map(Some),
        }
    }
}

/// A decoded `ChangeEvent<Entity>` → the JSON change event.
///
/// The JSON format has no `extra` (`after` carries every field), so the
/// Avro `extra` entries go back into `after`, their JSON text parsed (text
/// that is not JSON stays a string); only an event without `after` keeps
/// them in `extra`. An event read from JSON therefore survives the trip.
pub fn avro_to_event(set: &EntitySet, value: &Avro) -> Result<ChangeEvent, AvroError> {
    let event = Fields::of("ChangeEvent", value)?;
    let op_symbol = event.string("op")?;
    let op = op_from_symbol(&op_symbol).ok_or_else(|| AvroError::Shape {
        context: "ChangeEvent.op".into(),
        value: op_symbol.clone(),
    })?;
    let entity = event.string("entity")?;
    if entity != set.name {
        return Err(AvroError::EntityMismatch {
            event: entity,
            schema: set.name.clone(),
        });
    }
    let source = Fields::of("ChangeEvent.source", event.get("source")?)?;
    let polled_at = source
        .time("polled_at")?
        .ok_or_else(|| shape("ChangeEvent.source.polled_at".into(), &Avro::Null))?;
    let mut extra = Map::new();
    match event.get("extra")? {
        Avro::Map(items) => {
            // Sorted, so the result does not depend on HashMap order.
            let sorted: BTreeMap<_, _> = items.iter().collect();
            for (name, text) in sorted {
                let Avro::String(text) = text else {
                    return Err(shape(format!("ChangeEvent.extra.{name}"), text));
                };
                let value =
                    serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.clone()));
                extra.insert(name.clone(), value);
            }
        }
        other => return Err(shape("ChangeEvent.extra".into(), other)),
    }
    let after = match event.get("after")? {
        Avro::Null => None,
        record => {
            let mut after = avro_to_record(set, record)?;
            after.append(&mut extra);
            Some(after)
        }
    };
    Ok(ChangeEvent {
        op,
        entity,
        id: event.long("id")?,
        ts_ms: event.long("ts_ms")?,
        source: Source {
            system: source.string("system")?,
            base_url: source.string("base_url")?,
            opdateringsdato: source.opt_string("opdateringsdato")?,
            opdateringsdato_utc: source.time("opdateringsdato_utc")?,
            polled_at,
            snapshot: match source.get("snapshot")? {
                Avro::Boolean(b) => *b,
                other => return Err(shape("ChangeEvent.source.snapshot".into(), other)),
            },
        },
        after,
        extra,
    })
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::avro::OP_SYMBOLS;

    #[test]
    fn op_indexes_follow_the_schema_symbols() {
        for op in [Op::Read, Op::Create, Op::Update, Op::Delete] {
            assert_eq!(OP_SYMBOLS[op_index(op) as usize], op.code());
            assert_eq!(op_from_symbol(op.code()), Some(op));
        }
    }

    #[test]
    fn avro_spelling_matches_the_transliteration() {
        for name in ["mødeid", "Aktør", "ÆØÅæøå", "id", ""] {
            assert!(is_avro_spelling(name, &avro_name(name)), "{name}");
        }
        assert!(!is_avro_spelling("mødeid", "modeid"));
        assert!(!is_avro_spelling("mødeid", "moedeidx"));
        assert!(!is_avro_spelling("id", "i"));
    }
}
