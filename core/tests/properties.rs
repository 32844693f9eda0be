//! Property tests of the OData page parser and the configuration loader.
//!
//! Every property runs a few hundred to a thousand cases in the normal test
//! run; `PROPTEST_CASES=<n>` (see `scripts/proptest-long`) raises them all.
//! Each property prints how many cases passed (`-- --nocapture` shows it).

use oda_cdc_testkit::properties::{property, text};

mod page {
    use oda_cdc_core::oda::Page;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::{property, text};

    /// JSON values whose numbers survive a trip through text exactly
    /// (floats are multiples of 1/8 below 2^20).
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-(1i32 << 23)..(1i32 << 23)).prop_map(|n| Value::from(f64::from(n) / 8.0)),
            text(20).prop_map(Value::String),
            "[a-zæøå0-9 :.-]{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((text(6), inner), 0..4)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    fn record() -> impl Strategy<Value = Map<String, Value>> {
        let key = prop_oneof![3 => "[a-zæøå][a-zA-Zæøå0-9]{0,12}", 1 => text(8)];
        proptest::collection::vec((key, json_value()), 0..8)
            .prop_map(|pairs| pairs.into_iter().collect())
    }

    /// `odata.count` as ODA sends it (a string) or as a number.
    #[derive(Debug, Clone)]
    enum Count {
        Text(u64),
        Number(u64),
    }

    /// What a generated page holds, and its body.
    #[derive(Debug, Clone)]
    struct Generated {
        records: Vec<Map<String, Value>>,
        next_link: Option<String>,
        count: Option<Count>,
        body: String,
    }

    fn to_json<T: serde::Serialize>(value: &T) -> String {
        serde_json::to_string(value).expect("JSON serializes")
    }

    /// Joins members into an object in the order given.
    fn object(members: &[(String, String)], separator: &str) -> String {
        let inner: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("{}:{v}", to_json(k)))
            .collect();
        format!("{{{}}}", inner.join(separator))
    }

    fn valid_page() -> impl Strategy<Value = Generated> {
        let count = proptest::option::of(prop_oneof![
            any::<u64>().prop_map(Count::Text),
            any::<u64>().prop_map(Count::Number),
        ]);
        (
            "https://oda\\.ft\\.dk/api/\\$metadata#[A-Za-zæøå]{1,12}",
            proptest::collection::vec(record(), 0..6),
            proptest::option::of(prop_oneof![
                "https://oda\\.ft\\.dk/api/[A-Za-z]{1,10}\\?\\$skip=[0-9]{1,6}&\\$filter=[A-Za-z0-9%']{0,30}",
                text(30),
            ]),
            count,
            prop::sample::select(vec![",", ", ", ",\n  ", " ,\t"]),
        )
            .prop_flat_map(|(metadata, records, next_link, count, separator)| {
                let mut members = vec![
                    ("odata.metadata".to_owned(), to_json(&metadata)),
                    ("value".to_owned(), to_json(&records)),
                ];
                if let Some(link) = &next_link {
                    members.push(("odata.nextLink".to_owned(), to_json(link)));
                }
                match &count {
                    Some(Count::Text(n)) => {
                        members.push(("odata.count".to_owned(), to_json(&n.to_string())))
                    }
                    Some(Count::Number(n)) => members.push(("odata.count".to_owned(), to_json(n))),
                    None => {}
                }
                Just(members).prop_shuffle().prop_map(move |members| Generated {
                    records: records.clone(),
                    next_link: next_link.clone(),
                    count: count.clone(),
                    body: object(&members, separator),
                })
            })
    }

    #[test]
    fn a_valid_page_parses_to_exactly_its_records() {
        property(
            "page::a_valid_page_parses_to_exactly_its_records",
            1000,
            valid_page(),
            |page| {
                let parsed = Page::parse(page.body.as_bytes()).map_err(TestCaseError::fail)?;
                prop_assert_eq!(&parsed.records, &page.records);
                prop_assert_eq!(&parsed.next_link, &page.next_link);
                let count = page.count.map(|c| match c {
                    Count::Text(n) | Count::Number(n) => n,
                });
                prop_assert_eq!(parsed.count, count);
                Ok(())
            },
        );
    }

    #[test]
    fn a_truncated_page_is_an_error() {
        let cut = valid_page().prop_flat_map(|page| {
            let len = page.body.len();
            (Just(page), 0..len)
        });
        property(
            "page::a_truncated_page_is_an_error",
            1000,
            cut,
            |(page, at)| {
                let body = &page.body.as_bytes()[..at];
                prop_assert!(
                    Page::parse(body).is_err(),
                    "{:?}",
                    String::from_utf8_lossy(body)
                );
                Ok(())
            },
        );
    }

    /// Objects that are not a collection envelope: no `value`, or a `value`
    /// that is not an array of objects.
    fn not_an_envelope() -> impl Strategy<Value = Value> {
        let others = proptest::collection::vec(
            (
                prop_oneof![
                    "odata\\.(metadata|count|nextLink)",
                    "[a-zA-Z.]{0,10}",
                    text(8)
                ],
                json_value(),
            ),
            0..5,
        )
        .prop_map(|pairs| {
            pairs
                .into_iter()
                .filter(|(k, _)| k != "value")
                .collect::<Map<String, Value>>()
        });
        let bad_value = prop_oneof![
            Just(None),
            json_value()
                .prop_filter("not an array", |v| !v.is_array())
                .prop_map(Some),
            // An array with at least one member that is not an object.
            (
                proptest::collection::vec(record().prop_map(Value::Object), 0..3),
                json_value().prop_filter("not an object", |v| !v.is_object()),
                any::<prop::sample::Index>(),
            )
                .prop_map(|(mut members, odd, at)| {
                    let at = at.index(members.len() + 1);
                    members.insert(at, odd);
                    Some(Value::Array(members))
                }),
        ];
        (others, bad_value).prop_map(|(mut object, value)| {
            if let Some(value) = value {
                object.insert("value".to_owned(), value);
            }
            Value::Object(object)
        })
    }

    #[test]
    fn an_object_without_a_value_array_is_an_error_never_an_empty_page() {
        property(
            "page::an_object_without_a_value_array_is_an_error_never_an_empty_page",
            1000,
            not_an_envelope(),
            |body| {
                let text = to_json(&body);
                let parsed = Page::parse(text.as_bytes());
                prop_assert!(parsed.is_err(), "{} read as {:?}", text, parsed);
                Ok(())
            },
        );
    }

    /// JSON arrays shaped like the envelope's fields in declaration order
    /// (`value`, `odata.count`, `odata.nextLink`).
    fn envelope_as_array() -> impl Strategy<Value = Value> {
        (
            proptest::collection::vec(record().prop_map(Value::Object), 0..3),
            prop_oneof![Just(Value::Null), any::<u64>().prop_map(Value::from)],
            prop_oneof![Just(Value::Null), "[a-z:/.]{0,12}".prop_map(Value::String)],
        )
            .prop_map(|(records, count, link)| {
                Value::Array(vec![Value::Array(records), count, link])
            })
    }

    #[test]
    fn a_body_that_is_not_an_object_is_an_error_never_an_empty_page() {
        let bodies = prop_oneof![
            json_value().prop_filter("not an object", |v| !v.is_object()),
            envelope_as_array(),
        ];
        property(
            "page::a_body_that_is_not_an_object_is_an_error_never_an_empty_page",
            1000,
            bodies,
            |body| {
                let text = to_json(&body);
                let parsed = Page::parse(text.as_bytes());
                prop_assert!(parsed.is_err(), "{} read as {:?}", text, parsed);
                Ok(())
            },
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_what_parses_is_an_envelope() {
        let bodies = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            text(200).prop_map(String::into_bytes),
            // A valid page with one byte changed.
            (valid_page(), any::<prop::sample::Index>(), any::<u8>()).prop_map(
                |(page, at, byte)| {
                    let mut body = page.body.into_bytes();
                    let at = at.index(body.len());
                    body[at] = byte;
                    body
                }
            ),
        ];
        property(
            "page::arbitrary_bytes_never_panic_and_what_parses_is_an_envelope",
            2000,
            bodies,
            |body| {
                if let Ok(page) = Page::parse(&body) {
                    // serde_json skips the members the envelope ignores
                    // (`odata.metadata`, unknown ones) without checking
                    // their strings are UTF-8, so such a body reads; the
                    // rest of it must be JSON.
                    let text = String::from_utf8_lossy(&body);
                    let value: Value = serde_json::from_str(&text)
                        .map_err(|e| TestCaseError::fail(format!("parsed but not JSON: {e}")))?;
                    if !value.is_object() {
                        return Err(TestCaseError::fail("a body that is not an object parsed"));
                    }
                    let records = value
                        .get("value")
                        .and_then(Value::as_array)
                        .ok_or_else(|| TestCaseError::fail("parsed without a value array"))?;
                    prop_assert_eq!(records.len(), page.records.len());
                    for (record, parsed) in records.iter().zip(&page.records) {
                        prop_assert_eq!(record.as_object(), Some(parsed));
                    }
                    prop_assert_eq!(
                        value.get("odata.nextLink").and_then(Value::as_str),
                        page.next_link.as_deref()
                    );
                }
                Ok(())
            },
        );
    }
}

mod config {
    use std::net::{IpAddr, SocketAddr};
    use std::path::Path;
    use std::time::Duration;

    use oda_cdc_core::config::{ConfigError, KEYS, Layers, Origin, Settings, TopicClass};
    use oda_model::entity::{entity_set_ci, entity_sets};
    use proptest::prelude::*;
    use proptest::strategy::{BoxedStrategy, Union};

    use super::{property, text};

    /// One known key with a valid value, written for each layer.
    #[derive(Debug, Clone)]
    struct Setting {
        /// The dotted key, an entity set spelt as ODA spells it.
        key: String,
        /// The text of an environment variable or a `--set` flag.
        text: String,
        /// The same value in a TOML file.
        toml: toml::Value,
        /// How [`shown`] reads the loaded value.
        expected: String,
    }

    /// A loaded value as text, for comparison with [`Setting::expected`].
    fn shown(s: &Settings, key: &str) -> Option<String> {
        fn opt<T: ToString>(value: Option<T>) -> String {
            value.map_or_else(|| "<unset>".to_owned(), |v| v.to_string())
        }
        let parts: Vec<&str> = key.split('.').collect();
        if let ["entity", name, field] = parts[..] {
            let overrides = s.entity.get(name)?;
            return match field {
                "poll_interval" => Some(opt(overrides
                    .poll_interval
                    .map(|d| format!("{:?}", d.get())))),
                "reconcile_interval" => Some(opt(overrides
                    .reconcile_interval
                    .map(|d| format!("{:?}", d.get())))),
                "exclude_fields" => Some(format!("{:?}", overrides.exclude_fields)),
                _ => None,
            };
        }
        if let ["topics", class, field] = parts[..] {
            let class = TopicClass::ALL.into_iter().find(|c| c.name() == class)?;
            let durability = s.topics.class(class);
            return match field {
                "replication_factor" => Some(opt(durability.replication_factor)),
                "min_insync_replicas" => Some(opt(durability.min_insync_replicas)),
                _ => None,
            };
        }
        Some(match key {
            "kafka.brokers" => s.kafka.brokers.clone(),
            "kafka.topic_prefix" => s.kafka.topic_prefix.clone(),
            "schema_registry.url" => s.schema_registry.url.clone(),
            "schema_registry.username" => opt(s.schema_registry.username.as_ref()),
            "schema_registry.password" => {
                opt(s.schema_registry.password.as_ref().map(|p| p.expose()))
            }
            "schema_registry.ca_file" => {
                opt(s.schema_registry.ca_file.as_ref().map(|p| p.display()))
            }
            "source.base_url" => s.source.base_url.clone(),
            "format" => format!("{:?}", s.format),
            "entities" => opt(s.entities.as_ref().map(|e| format!("{e:?}"))),
            "poll.interval" => format!("{:?}", s.poll.interval.get()),
            "poll.lookback" => format!("{:?}", s.poll.lookback.get()),
            "reconcile.interval" => format!("{:?}", s.reconcile.interval.get()),
            "http.max_in_flight" => s.http.max_in_flight.to_string(),
            "http.rate_limit" => format!("{:?}", s.http.rate_limit),
            "http.connect_timeout" => format!("{:?}", s.http.connect_timeout.get()),
            "http.request_timeout" => format!("{:?}", s.http.request_timeout.get()),
            "http.attempts" => s.http.attempts.to_string(),
            "http.backoff" => format!("{:?}", s.http.backoff.get()),
            "http.backoff_max" => format!("{:?}", s.http.backoff_max.get()),
            "http.retry_after_max" => format!("{:?}", s.http.retry_after_max.get()),
            "http.max_body_bytes" => s.http.max_body_bytes.to_string(),
            "http.allow_insecure" => s.http.allow_insecure.to_string(),
            "producer.transactional_id" => s.producer.transactional_id.clone(),
            "producer.failover_timeout" => format!("{:?}", s.producer.failover_timeout.get()),
            "consumer.group" => opt(s.consumer.group.as_ref()),
            "consumer.delivery" => format!("{:?}", s.consumer.delivery),
            "consumer.dlq_topic" => opt(s.consumer.dlq_topic.as_ref()),
            "consumer.max_retries" => opt(s.consumer.max_retries),
            "postgres.url" => opt(s.postgres.url.as_ref().map(|u| u.expose().to_owned())),
            "postgres.schema" => s.postgres.schema.clone(),
            "metrics.addr" => opt(s.metrics.addr),
            "log.format" => format!("{:?}", s.log.format),
            "profile" => format!("{:?}", s.profile),
            _ => return None,
        })
    }

    /// Whitespace an environment variable may carry around a number.
    fn padding() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["", "", " ", "\t", "  "]).prop_map(str::to_owned)
    }

    fn text_value(
        strategy: impl Strategy<Value = String> + 'static,
    ) -> BoxedStrategy<(String, toml::Value, String)> {
        strategy
            .prop_map(|s| (s.clone(), toml::Value::String(s.clone()), s))
            .boxed()
    }

    /// Text that is not blank (the keys validation refuses blank for).
    fn non_blank() -> impl Strategy<Value = String> {
        text(24).prop_filter("not blank", |s| !s.trim().is_empty())
    }

    fn integer(
        range: std::ops::RangeInclusive<i64>,
    ) -> BoxedStrategy<(String, toml::Value, String)> {
        (range, padding(), padding())
            .prop_map(|(n, before, after)| {
                (
                    format!("{before}{n}{after}"),
                    toml::Value::Integer(n),
                    n.to_string(),
                )
            })
            .boxed()
    }

    /// A duration as a human writes it, with its value.
    fn duration(non_zero: bool) -> BoxedStrategy<(String, toml::Value, String)> {
        let term = (
            0..100_000u64,
            prop::sample::select(vec![
                ("ms", 1u64),
                ("s", 1_000),
                ("m", 60_000),
                ("h", 3_600_000),
                ("d", 86_400_000),
            ]),
        );
        proptest::collection::vec(term, 1..3)
            .prop_filter("not zero", move |terms| {
                !non_zero || terms.iter().any(|(n, _)| *n > 0)
            })
            .prop_map(|terms| {
                let text: Vec<String> = terms
                    .iter()
                    .map(|(n, (unit, _))| format!("{n}{unit}"))
                    .collect();
                let text = text.join(" ");
                let millis: u64 = terms.iter().map(|(n, (_, ms))| n * ms).sum();
                let expected = format!("{:?}", Duration::from_millis(millis));
                (text.clone(), toml::Value::String(text), expected)
            })
            .boxed()
    }

    /// A duration within `millis`, written in milliseconds or whole seconds.
    fn bounded_duration(
        millis: std::ops::RangeInclusive<u64>,
    ) -> BoxedStrategy<(String, toml::Value, String)> {
        let seconds = millis.start().div_ceil(1_000)..=millis.end() / 1_000;
        prop_oneof![
            millis.prop_map(|ms| (format!("{ms}ms"), ms)),
            seconds.prop_map(|s| (format!("{s}s"), s * 1_000)),
        ]
        .prop_map(|(text, ms)| {
            let expected = format!("{:?}", Duration::from_millis(ms));
            (text.clone(), toml::Value::String(text), expected)
        })
        .boxed()
    }

    fn list() -> BoxedStrategy<(String, toml::Value, String)> {
        let item = text(10)
            .prop_map(|s| s.replace(',', "").trim().to_owned())
            .prop_filter("not empty", |s| !s.is_empty());
        (
            proptest::collection::vec(item, 0..5),
            prop::sample::select(vec![",", ", ", " ,  "]),
        )
            .prop_map(|(items, separator)| {
                let toml =
                    toml::Value::Array(items.iter().cloned().map(toml::Value::String).collect());
                (items.join(separator), toml, format!("{items:?}"))
            })
            .boxed()
    }

    fn choice(
        options: &[(&'static str, &'static str)],
    ) -> BoxedStrategy<(String, toml::Value, String)> {
        prop::sample::select(options.to_vec())
            .prop_map(|(text, shown)| {
                (
                    text.to_owned(),
                    toml::Value::String(text.to_owned()),
                    shown.to_owned(),
                )
            })
            .boxed()
    }

    fn url(schemes: &'static str) -> BoxedStrategy<(String, toml::Value, String)> {
        let pattern = format!(
            "{schemes}://[a-z][a-z0-9]{{0,10}}(\\.[a-z]{{2,5}})?(:[1-9][0-9]{{0,3}})?(/[a-zA-Z0-9_.~-]{{0,8}}){{0,3}}"
        );
        text_value(proptest::string::string_regex(&pattern).expect("a valid pattern"))
    }

    /// Valid values of one key, as (text, TOML value, shown value).
    fn values_of(path: &str) -> BoxedStrategy<(String, toml::Value, String)> {
        let field = path.rsplit('.').next().unwrap_or(path);
        match path {
            "kafka.brokers" | "kafka.topic_prefix" | "producer.transactional_id" => text_value(non_blank()),
            "schema_registry.username" | "schema_registry.password" | "consumer.group" | "consumer.dlq_topic" => {
                text_value(text(24))
            }
            "schema_registry.url" => url("https?"),
            "postgres.url" => prop_oneof![
                url("postgres(ql)?"),
                text_value("host=[a-z]{1,8}( port=[1-9][0-9]{0,3})?( dbname=[a-z_]{1,8})?"),
            ]
            .boxed(),
            "postgres.schema" => text_value("[a-z_][a-z0-9_]{0,20}"),
            "source.base_url" => prop_oneof![
                url("https"),
                text_value("http://(localhost|127\\.0\\.0\\.1|127\\.[1-9]?[0-9]\\.[0-9]\\.1|\\[::1\\])(:[1-9][0-9]{0,3})?(/[a-z]{0,6})?"),
            ]
            .boxed(),
            "schema_registry.ca_file" => {
                let root = env!("CARGO_MANIFEST_DIR");
                let files = vec![format!("{root}/Cargo.toml"), format!("{root}/src/lib.rs"), format!("{root}/tests")];
                text_value(prop::sample::select(files))
            }
            "format" => choice(&[("avro", "Avro"), ("json", "Json")]),
            "log.format" => choice(&[("text", "Text"), ("json", "Json")]),
            "profile" => choice(&[("development", "Development"), ("production", "Production")]),
            "consumer.delivery" => choice(&[("exactly_once", "ExactlyOnce"), ("at_least_once", "AtLeastOnce")]),
            "entities" => list(),
            "metrics.addr" => (any::<IpAddr>(), any::<u16>())
                .prop_map(|(ip, port)| {
                    let addr = SocketAddr::new(ip, port).to_string();
                    (addr.clone(), toml::Value::String(addr.clone()), addr)
                })
                .boxed(),
            "poll.interval" => duration(true),
            // Bounded by the group session timeouts a broker accepts.
            "producer.failover_timeout" => bounded_duration(6_000..=300_000),
            "http.max_in_flight" | "http.attempts" => integer(1..=i64::from(u32::MAX)),
            "http.max_body_bytes" => integer(65_536..=i64::MAX),
            "consumer.max_retries" => integer(0..=i64::from(u32::MAX)),
            _ if path.starts_with("topics.") => integer(1..=i64::from(u16::MAX)),
            "http.rate_limit" => (0.0..1e6f64, padding())
                .prop_map(|(rate, pad)| (format!("{pad}{rate}{pad}"), toml::Value::Float(rate), format!("{rate:?}")))
                .boxed(),
            "http.allow_insecure" => (any::<bool>(), padding())
                .prop_map(|(b, pad)| (format!("{pad}{b}"), toml::Value::Boolean(b), b.to_string()))
                .boxed(),
            _ if field == "exclude_fields" => list(),
            _ if field.ends_with("interval") || path.starts_with("http.") || path.starts_with("poll.") => {
                duration(false)
            }
            _ => panic!("no values for `{path}`: a new key? add it here"),
        }
    }

    /// Entity set names, in ODA's spelling.
    fn entity_name() -> impl Strategy<Value = String> {
        let names: Vec<String> = entity_sets().iter().map(|e| e.name.clone()).collect();
        prop::sample::select(names)
    }

    /// Any known key (the entity `*` filled in) with one valid value.
    fn setting_of(path: &'static str) -> BoxedStrategy<Setting> {
        let key = if path.contains('*') {
            entity_name()
                .prop_map(move |name| path.replace('*', &name))
                .boxed()
        } else {
            Just(path.to_owned()).boxed()
        };
        (key, values_of(path))
            .prop_map(|(key, (text, toml, expected))| Setting {
                key,
                text,
                toml,
                expected,
            })
            .boxed()
    }

    fn any_setting() -> impl Strategy<Value = Setting> {
        Union::new(KEYS.iter().map(|k| setting_of(k.path)))
    }

    fn env_name(key: &str) -> String {
        let parts: Vec<String> = key.split('.').map(str::to_uppercase).collect();
        format!("ODA_CDC_{}", parts.join("__"))
    }

    /// `"a"."b" = value`: every part quoted, so entity names with `ø` work.
    fn toml_line(key: &str, value: &toml::Value) -> String {
        let parts: Vec<String> = key
            .split('.')
            .map(|p| toml::Value::String(p.to_owned()).to_string())
            .collect();
        format!("{} = {value}\n", parts.join("."))
    }

    fn from_toml(text: &str) -> Result<Settings, ConfigError> {
        let mut layers = Layers::new();
        layers.add_toml(text, Path::new("test.toml"))?;
        Settings::load(&layers)
    }

    fn from_env(name: &str, value: &str) -> Result<Settings, ConfigError> {
        let mut layers = Layers::new();
        layers.add_env([(name.to_owned(), value.to_owned())])?;
        Settings::load(&layers)
    }

    fn from_flag(key: &str, value: &str) -> Result<Settings, ConfigError> {
        let mut layers = Layers::new();
        layers.set(key, value, Origin::Flag(format!("--set {key}")))?;
        Settings::load(&layers)
    }

    #[test]
    fn every_key_has_values_and_a_reader() {
        let defaults = Settings::load(&Layers::new()).expect("defaults load");
        for key in KEYS {
            let path = key.path.replace('*', "Sag");
            assert!(
                shown(&defaults, &path).is_some() || path.starts_with("entity."),
                "{path}"
            );
            let _ = values_of(key.path);
        }
    }

    #[test]
    fn a_key_from_the_environment_or_a_flag_equals_the_same_key_from_the_file() {
        property(
            "config::a_key_from_the_environment_or_a_flag_equals_the_same_key_from_the_file",
            1000,
            any_setting(),
            |setting| {
                let file = toml_line(&setting.key, &setting.toml);
                let from_file =
                    from_toml(&file).map_err(|e| TestCaseError::fail(format!("{file}: {e}")))?;
                let name = env_name(&setting.key);
                let from_env = from_env(&name, &setting.text)
                    .map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
                let from_flag = from_flag(&setting.key, &setting.text)
                    .map_err(|e| TestCaseError::fail(format!("--set: {e}")))?;
                let expected = Some(setting.expected.clone());
                prop_assert_eq!(&shown(&from_file, &setting.key), &expected, "file {}", file);
                prop_assert_eq!(&shown(&from_env, &setting.key), &expected, "env {}", name);
                prop_assert_eq!(&shown(&from_flag, &setting.key), &expected, "flag");
                // Nothing else differs either.
                let file_debug = format!("{from_file:?}");
                prop_assert_eq!(&format!("{from_env:?}"), &file_debug);
                prop_assert_eq!(&format!("{from_flag:?}"), &file_debug);
                Ok(())
            },
        );
    }

    #[test]
    fn later_layers_win() {
        let settings = prop::sample::select(KEYS.to_vec()).prop_flat_map(|key| {
            (
                setting_of(key.path),
                values_of(key.path),
                values_of(key.path),
            )
        });
        property(
            "config::later_layers_win",
            512,
            settings,
            |(file, (env_text, _, env_expected), (flag_text, _, flag_expected))| {
                let key = &file.key;
                let mut layers = Layers::new();
                layers
                    .add_toml(&toml_line(key, &file.toml), Path::new("test.toml"))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let loaded =
                    Settings::load(&layers).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(shown(&loaded, key), Some(file.expected.clone()));
                layers
                    .add_env([(env_name(key), env_text)])
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let loaded =
                    Settings::load(&layers).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(shown(&loaded, key), Some(env_expected));
                layers
                    .set(key, &flag_text, Origin::Flag(format!("--set {key}")))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let loaded =
                    Settings::load(&layers).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(shown(&loaded, key), Some(flag_expected));
                Ok(())
            },
        );
    }

    /// Whether a dotted key is one the loader knows, by KEYS (the entity
    /// `*` matching any entity set, whatever its case) or the open
    /// `kafka.properties.<name>` table.
    fn is_known(key: &str) -> bool {
        if key.starts_with("kafka.properties.") {
            return true;
        }
        let parts: Vec<&str> = key.split('.').collect();
        KEYS.iter().any(|k| {
            let pattern: Vec<&str> = k.path.split('.').collect();
            pattern.len() == parts.len()
                && pattern
                    .iter()
                    .zip(&parts)
                    .all(|(p, s)| p == s || (*p == "*" && entity_set_ci(s).is_some()))
        })
    }

    /// Dotted keys: random identifiers, and known keys with a typo.
    fn unknown_key() -> impl Strategy<Value = String> {
        let part = "[a-z][a-z0-9]{0,6}(_[a-z0-9]{1,6}){0,2}";
        let random = proptest::collection::vec(part, 1..5).prop_map(|parts| parts.join("."));
        let known = prop::sample::select(KEYS.to_vec()).prop_flat_map(|k| {
            let path = k.path;
            prop_oneof![
                Just("sag".to_owned()),
                entity_name().prop_map(|n| n.to_lowercase()),
                Just("nope".to_owned())
            ]
            .prop_map(move |name| path.replace('*', &name))
        });
        let typo = (known, any::<prop::sample::Index>(), "[a-z_]", 0..4u8).prop_map(
            |(key, at, c, how)| {
                let chars: Vec<char> = key.chars().collect();
                let at = at.index(chars.len());
                let mut out = chars;
                match how {
                    0 => out.insert(at, c.chars().next().unwrap_or('x')),
                    1 => {
                        out.remove(at);
                    }
                    2 => out.truncate(at),
                    _ => out.extend(".extra".chars()),
                }
                out.into_iter().collect::<String>()
            },
        );
        prop_oneof![random, typo].prop_filter("unknown", |key| !is_known(key))
    }

    /// Whether the environment layer reads this key back unchanged: no
    /// empty part, no `_` at a part's edge (which would merge into `__`),
    /// and not a Kubernetes service link (which the layer skips).
    fn env_safe(key: &str) -> bool {
        let upper = key.to_ascii_uppercase();
        key.split('.')
            .all(|p| !p.is_empty() && !p.starts_with('_') && !p.ends_with('_') && !p.contains("__"))
            && !upper.ends_with("_SERVICE_HOST")
            && !upper.contains("_SERVICE_PORT")
            && !upper.ends_with("_PORT")
            && !upper.contains("_PORT_")
    }

    fn names_the_unknown_key(
        result: Result<Layers, ConfigError>,
        key: &str,
    ) -> Result<(), TestCaseError> {
        match result {
            Err(err @ ConfigError::UnknownKey { .. }) => {
                let text = err.to_string();
                prop_assert!(text.contains(&format!("`{key}`")), "{}", text);
                let ConfigError::UnknownKey { key: named, .. } = err else {
                    unreachable!("matched above")
                };
                prop_assert_eq!(named, key);
                Ok(())
            }
            Err(other) => Err(TestCaseError::fail(format!(
                "`{key}`: not an unknown key: {other}"
            ))),
            Ok(_) => Err(TestCaseError::fail(format!("`{key}` was accepted"))),
        }
    }

    #[test]
    fn an_unknown_key_is_refused_in_every_layer_naming_it() {
        property(
            "config::an_unknown_key_is_refused_in_every_layer_naming_it",
            1000,
            (unknown_key(), text(12)),
            |(key, value)| {
                let file = toml_line(&key, &toml::Value::String(value.clone()));
                let mut layers = Layers::new();
                let result = layers
                    .add_toml(&file, Path::new("test.toml"))
                    .map(|()| layers);
                names_the_unknown_key(result, &key)?;

                let mut layers = Layers::new();
                let result = layers
                    .set(&key, &value, Origin::Flag(format!("--set {key}")))
                    .map(|()| layers);
                names_the_unknown_key(result, &key)?;

                let lower = key.to_lowercase();
                if env_safe(&lower) {
                    let mut layers = Layers::new();
                    let result = layers.add_env([(env_name(&key), value)]).map(|()| layers);
                    names_the_unknown_key(result, &lower)?;
                }
                Ok(())
            },
        );
    }

    /// The integer keys, with the values the loader accepts.
    const INTEGER_KEYS: &[(&str, i64, i64)] = &[
        ("http.max_in_flight", 1, i64::MAX),
        ("http.attempts", 1, u32::MAX as i64),
        ("http.max_body_bytes", 65_536, i64::MAX),
        ("consumer.max_retries", 0, u32::MAX as i64),
    ];

    fn integer_text() -> impl Strategy<Value = String> {
        prop_oneof![
            text(16),
            "[ \t]{0,2}[+-]?[0-9]{0,22}[ \t]{0,2}",
            "[+-]?[0-9]{1,8}[.eE_,x][0-9]{0,4}",
            prop::sample::select(vec![
                "0",
                "-1",
                "1",
                "65535",
                "65536",
                "4294967295",
                "4294967296",
                "9223372036854775807",
                "9223372036854775808",
                "-9223372036854775808",
                "18446744073709551615",
                "",
                " ",
                "true",
                "1e3",
                "0x10",
                "1_000",
                "５",
            ])
            .prop_map(str::to_owned),
        ]
    }

    #[test]
    fn garbage_for_an_integer_key_is_an_error_naming_the_key() {
        property(
            "config::garbage_for_an_integer_key_is_an_error_naming_the_key",
            1000,
            (
                prop::sample::select(INTEGER_KEYS.to_vec()),
                integer_text(),
                any::<bool>(),
            ),
            |((key, min, max), value, by_flag)| {
                // Independently: a whole number in the key's range loads,
                // anything else is refused naming the key.
                let expected = value
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n));
                let result = if by_flag {
                    from_flag(key, &value)
                } else {
                    from_env(&env_name(key), &value)
                };
                match (result, expected) {
                    (Ok(settings), Some(n)) => {
                        prop_assert_eq!(shown(&settings, key), Some(n.to_string()));
                    }
                    (Err(err), None) => {
                        let text = err.to_string();
                        prop_assert!(
                            text.starts_with(&format!("invalid value for `{key}`")),
                            "{:?}: {}",
                            value,
                            text
                        );
                    }
                    (Ok(settings), None) => {
                        return Err(TestCaseError::fail(format!(
                            "{value:?} accepted for {key}: {:?}",
                            shown(&settings, key)
                        )));
                    }
                    (Err(err), Some(n)) => {
                        return Err(TestCaseError::fail(format!("{n} refused for {key}: {err}")));
                    }
                }
                Ok(())
            },
        );
    }
}
