use std::path::Path;
use std::time::Duration;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load(file: &str, vars: &[(&str, &str)], sets: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let mut layers = Layers::new();
    layers.add_toml(file, Path::new("test.toml"))?;
    layers.add_env(env(vars))?;
    for (k, v) in sets {
        layers.set(k, v, Origin::Flag(format!("--set {k}")))?;
    }
    Settings::load(&layers)
}

#[test]
fn defaults_follow_the_spec() {
    let s = load("", &[], &[]).expect("empty config is valid");
    assert_eq!(s.kafka.brokers, "127.0.0.1:9092");
    assert_eq!(s.kafka.topic_prefix, "parliament");
    assert_eq!(
        s.schema_registry.url,
        "http://127.0.0.1:8081/apis/ccompat/v7"
    );
    assert_eq!(s.source.base_url, "https://oda.ft.dk/api");
    assert_eq!(s.poll.interval.get(), Duration::from_secs(300));
    assert_eq!(s.poll.lookback.get(), Duration::from_secs(600));
    assert_eq!(s.reconcile.interval.get(), Duration::from_secs(86_400));
    assert_eq!(s.http.max_in_flight, 4);
    assert_eq!(s.http.rate_limit, 5.0);
    assert_eq!(s.format, Format::Json);
    assert_eq!(s.consumer.delivery, Delivery::ExactlyOnce);
    assert!(s.entities.is_none());
}

#[test]
fn environment_overrides_file_and_flags_override_environment() {
    let file = "[poll]\ninterval = \"1m\"\nlookback = \"2m\"\n[http]\nmax_in_flight = 2\n";
    let s = load(
        file,
        &[
            ("ODA_CDC_POLL__INTERVAL", "2s"),
            ("ODA_CDC_HTTP__MAX_IN_FLIGHT", "8"),
        ],
        &[("http.max_in_flight", "16")],
    )
    .expect("valid");
    assert_eq!(s.poll.interval.get(), Duration::from_secs(2));
    assert_eq!(s.poll.lookback.get(), Duration::from_secs(120));
    assert_eq!(s.http.max_in_flight, 16);
}

#[test]
fn oda_cdc_names_win_over_short_aliases() {
    let s = load(
        "",
        &[
            ("KAFKA_BROKERS", "alias:9092"),
            ("ODA_CDC_KAFKA__BROKERS", "full:9092"),
            ("ODA_BASE_URL", "http://127.0.0.1:8089/api"),
            ("POLL_INTERVAL", "30s"),
        ],
        &[],
    )
    .expect("valid");
    assert_eq!(s.kafka.brokers, "full:9092");
    assert_eq!(s.source.base_url, "http://127.0.0.1:8089/api");
    assert_eq!(s.poll.interval.get(), Duration::from_secs(30));
}

#[test]
fn lists_and_entity_names_from_the_environment() {
    let s = load(
        "",
        &[
            ("ODA_CDC_ENTITIES", "Sag, Aktør"),
            ("ODA_CDC_ENTITY__AKTØR__EXCLUDE_FIELDS", "biografi"),
            ("ODA_CDC_ENTITY__SAG__POLL_INTERVAL", "1m"),
        ],
        &[],
    )
    .expect("valid");
    assert_eq!(
        s.entities.as_deref(),
        Some(&["Sag".to_owned(), "Aktør".to_owned()][..])
    );
    assert_eq!(s.entity["Aktør"].exclude_fields, ["biografi"]);
    assert_eq!(
        s.entity["Sag"].poll_interval.map(HumanDuration::get),
        Some(Duration::from_secs(60))
    );
}

#[test]
fn kafka_properties_pass_through_from_every_layer() {
    let file = "[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"linger.ms\" = 50\n";
    let mut layers = Layers::new();
    layers.add_toml(file, Path::new("k.toml")).expect("toml");
    layers
        .add_env(env(&[(
            "ODA_CDC_KAFKA__PROPERTIES__SASL_MECHANISM",
            "SCRAM-SHA-256",
        )]))
        .expect("env");
    layers
        .set(
            "kafka.properties.sasl.username",
            "svc",
            Origin::Flag("--kafka-property".into()),
        )
        .expect("flag");
    let s = Settings::load(&layers).expect("valid");
    let p = &s.kafka.properties;
    assert_eq!(p["security.protocol"], "SASL_SSL");
    assert_eq!(p["linger.ms"], "50");
    assert_eq!(p["sasl.mechanism"], "SCRAM-SHA-256");
    assert_eq!(p["sasl.username"], "svc");
}

#[test]
fn unknown_keys_are_named_with_their_origin() {
    let err = load("[kafka]\nbrokerz = \"x\"\n", &[], &[]).expect_err("unknown key");
    assert_eq!(
        err.to_string(),
        "unknown configuration key `kafka.brokerz` (from config file test.toml)"
    );
    let err = load("", &[("ODA_CDC_POLL__INTERVALL", "5m")], &[]).expect_err("unknown env");
    assert_eq!(
        err.to_string(),
        "unknown configuration key `poll.intervall` (from environment variable ODA_CDC_POLL__INTERVALL)"
    );
    let err =
        load("[entity.Nope]\npoll_interval = \"1m\"\n", &[], &[]).expect_err("unknown entity");
    assert!(
        err.to_string().contains("`entity.Nope.poll_interval`"),
        "{err}"
    );
}

#[test]
fn bad_values_are_named_with_their_origin() {
    let err = load("[poll]\ninterval = \"soon\"\n", &[], &[]).expect_err("bad duration");
    let text = err.to_string();
    assert!(
        text.starts_with("invalid value for `poll.interval` (from config file test.toml)"),
        "{text}"
    );
    let err = load("", &[("ODA_CDC_HTTP__MAX_IN_FLIGHT", "many")], &[]).expect_err("bad int");
    assert!(err.to_string().contains("`http.max_in_flight`"), "{err}");
    let err = load("format = \"xml\"\n", &[], &[]).expect_err("bad enum");
    assert!(err.to_string().contains("`format`"), "{err}");
    let err = load("", &[], &[("http.max_in_flight", "0")]).expect_err("zero");
    assert!(err.to_string().contains("`http.max_in_flight`"), "{err}");
}

#[test]
fn guarantee_carrying_properties_cannot_be_overridden() {
    let err = load(
        "[kafka.properties]\n\"transactional.id\" = \"x\"\n",
        &[],
        &[],
    )
    .expect_err("reserved");
    assert!(
        err.to_string()
            .contains("kafka.properties.transactional.id"),
        "{err}"
    );
}

#[test]
fn malformed_toml_names_the_file() {
    let err = load("[kafka\n", &[], &[]).expect_err("syntax");
    assert!(
        err.to_string()
            .starts_with("config file test.toml is not valid TOML"),
        "{err}"
    );
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let s = load(
        "[schema_registry]\nusername = \"u\"\npassword = \"hunter2\"\n",
        &[],
        &[],
    )
    .expect("valid");
    assert!(!format!("{s:?}").contains("hunter2"));
    assert_eq!(
        s.schema_registry.password.as_ref().map(|p| p.expose()),
        Some("hunter2")
    );
}

#[test]
fn kubernetes_service_links_are_not_configuration() {
    // A Service named `oda-cdc-producer` gives every pod these variables.
    let s = load(
        "",
        &[
            ("ODA_CDC_PRODUCER_SERVICE_HOST", "10.0.0.7"),
            ("ODA_CDC_PRODUCER_SERVICE_PORT", "9464"),
            ("ODA_CDC_PRODUCER_SERVICE_PORT_METRICS", "9464"),
            ("ODA_CDC_PRODUCER_PORT", "tcp://10.0.0.7:9464"),
            ("ODA_CDC_PRODUCER_PORT_9464_TCP_ADDR", "10.0.0.7"),
            ("ODA_CDC_POLL__INTERVAL", "2s"),
        ],
        &[],
    )
    .expect("service links are skipped");
    assert_eq!(s.poll.interval.get(), Duration::from_secs(2));
    // A real typo is still refused.
    assert!(matches!(
        load("", &[("ODA_CDC_POLL__INTERVALL", "2s")], &[]),
        Err(ConfigError::UnknownKey { .. })
    ));
}

#[test]
fn plain_http_is_for_loopback_unless_allowed() {
    for local in [
        "http://127.0.0.1:8089/api",
        "http://localhost:8089/api",
        "http://[::1]:8089/api",
    ] {
        assert!(load("", &[("ODA_BASE_URL", local)], &[]).is_ok(), "{local}");
    }
    let err = load("", &[("ODA_BASE_URL", "http://oda-sim:8089/api")], &[])
        .expect_err("plain HTTP to another host");
    assert!(err.to_string().contains("`source.base_url`"), "{err}");
    assert!(err.to_string().contains("http.allow_insecure"), "{err}");
    let allowed = load(
        "[http]\nallow_insecure = true\n",
        &[("ODA_BASE_URL", "http://oda-sim:8089/api")],
        &[],
    );
    assert!(allowed.is_ok(), "{allowed:?}");
    let from_env = load(
        "",
        &[
            ("ODA_BASE_URL", "http://oda-sim:8089/api"),
            ("ODA_CDC_HTTP__ALLOW_INSECURE", "true"),
        ],
        &[],
    );
    assert!(from_env.is_ok(), "{from_env:?}");
    let err = load("", &[("ODA_CDC_HTTP__ALLOW_INSECURE", "yes")], &[]).expect_err("not a bool");
    assert!(err.to_string().contains("`http.allow_insecure`"), "{err}");
}

#[test]
fn http_limits_are_keys_with_todays_defaults() {
    let s = load("", &[], &[]).expect("defaults");
    assert_eq!(
        s.http.connect_timeout.get(),
        std::time::Duration::from_secs(5)
    );
    assert_eq!(
        s.http.request_timeout.get(),
        std::time::Duration::from_secs(30)
    );
    assert_eq!(s.http.attempts, 5);
    assert_eq!(s.http.backoff.get(), std::time::Duration::from_millis(250));
    assert_eq!(s.http.max_body_bytes, 16 * 1024 * 1024);
    let s = load(
        "[http]\nattempts = 2\nmax_body_bytes = 1048576\nretry_after_max = \"5s\"\n",
        &[],
        &[],
    )
    .expect("set");
    assert_eq!(s.http.attempts, 2);
    assert_eq!(
        s.http.retry_after_max.get(),
        std::time::Duration::from_secs(5)
    );
    let err = load("", &[], &[("http.attempts", "0")]).expect_err("zero attempts");
    assert!(err.to_string().contains("`http.attempts`"), "{err}");
}

#[test]
fn no_debug_output_shows_a_secret_property_or_url_credentials() {
    let s = load(
        "[kafka.properties]\n\"sasl.password\" = \"kafka-hunter2\"\n\"sasl.username\" = \"svc\"\n\
         [schema_registry]\nurl = \"https://reg:url-hunter2@registry.example.org/apis\"\n\
         [source]\nbase_url = \"https://oda:src-hunter2@oda.example.org/api\"\n",
        &[],
        &[],
    )
    .expect("valid");
    let shown = format!("{s:?} {s:#?}");
    for secret in ["kafka-hunter2", "url-hunter2", "src-hunter2"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("svc"), "the user name is not a secret");
}

#[test]
fn kafka_properties_are_checked_before_any_connection() {
    let err = load("", &[], &[("kafka.properties.enable.auto.commit", "true")]);
    let err = err.expect_err("weakening");
    assert!(
        err.to_string()
            .contains("`kafka.properties.enable.auto.commit`"),
        "{err}"
    );
    let err = load("[kafka.properties]\n\"linger.mss\" = \"5\"\n", &[], &[]).expect_err("unknown");
    assert!(
        err.to_string().contains("`kafka.properties.linger.mss`"),
        "{err}"
    );
    let err = load(
        "[kafka.properties]\n\"ssl.ca.location\" = \"/nonexistent/ca.pem\"\n",
        &[],
        &[],
    )
    .expect_err("unreadable CA");
    assert!(
        err.to_string()
            .contains("`kafka.properties.ssl.ca.location`"),
        "{err}"
    );
    let err = load(
        "[schema_registry]\nca_file = \"/nonexistent/ca.pem\"\n",
        &[],
        &[],
    )
    .expect_err("unreadable registry CA");
    assert!(
        err.to_string().contains("`schema_registry.ca_file`"),
        "{err}"
    );
}

#[test]
fn durability_per_topic_class_from_every_layer() {
    let file = "profile = \"production\"\n[topics.entity]\nreplication_factor = 3\n";
    let s = load(
        file,
        &[("ODA_CDC_TOPICS__DLQ__MIN_INSYNC_REPLICAS", "1")],
        &[("topics.state.replication_factor", "2")],
    )
    .expect("valid");
    assert_eq!(s.profile, Profile::Production);
    assert_eq!(s.topics.entity.replication_factor, Some(3));
    assert_eq!(s.topics.dlq.min_insync_replicas, Some(1));
    assert_eq!(s.topics.state.replication_factor, Some(2));
    assert_eq!(s.topics.processed, ClassDurability::default());
    assert_eq!(
        load("", &[], &[]).expect("valid").profile,
        Profile::Development
    );
}

#[test]
fn impossible_durability_is_refused_naming_the_key() {
    for (sets, key) in [
        (
            vec![("topics.internal.replication_factor", "0")],
            "topics.internal.replication_factor",
        ),
        (
            vec![
                ("topics.processed.replication_factor", "2"),
                ("topics.processed.min_insync_replicas", "3"),
            ],
            "topics.processed.min_insync_replicas",
        ),
        (vec![("topics.dlq.copies", "3")], "topics.dlq.copies"),
        (vec![("profile", "staging")], "profile"),
    ] {
        let error = load("", &[], &sets).expect_err("refused");
        assert!(error.to_string().contains(key), "{key}: {error}");
    }
}

#[test]
fn secrets_come_from_files_named_by_file_variables() {
    let dir = std::env::temp_dir().join(oda_cdc_testkit_free_name("secret"));
    std::fs::create_dir_all(&dir).expect("dir");
    let password = dir.join("password");
    std::fs::write(&password, "s3cr3t\n").expect("write");
    let path = password.display().to_string();
    let s = load(
        "",
        &[
            (
                "ODA_CDC_KAFKA__PROPERTIES__SASL_PASSWORD_FILE",
                path.as_str(),
            ),
            ("ODA_CDC_SCHEMA_REGISTRY__PASSWORD_FILE", path.as_str()),
            // A key of its own, not a file holding `schema_registry.ca`.
            ("ODA_CDC_SCHEMA_REGISTRY__CA_FILE", path.as_str()),
        ],
        &[],
    )
    .expect("valid");
    assert_eq!(s.kafka.properties["sasl.password"], "s3cr3t");
    assert_eq!(
        s.schema_registry.password.as_ref().map(|p| p.expose()),
        Some("s3cr3t")
    );
    assert_eq!(
        s.schema_registry.ca_file.as_deref(),
        Some(password.as_path())
    );
    assert!(!format!("{s:?}").contains("s3cr3t"), "never shown");

    let missing = load(
        "",
        &[(
            "ODA_CDC_KAFKA__PROPERTIES__SASL_PASSWORD_FILE",
            "/nonexistent/password",
        )],
        &[],
    )
    .expect_err("an unreadable secret file is refused");
    let message = missing.to_string();
    assert!(
        message.contains("kafka.properties.sasl.password")
            && message.contains("ODA_CDC_KAFKA__PROPERTIES__SASL_PASSWORD_FILE"),
        "{message}"
    );
    let both = load(
        "",
        &[
            ("ODA_CDC_SCHEMA_REGISTRY__PASSWORD", "a"),
            ("ODA_CDC_SCHEMA_REGISTRY__PASSWORD_FILE", path.as_str()),
        ],
        &[],
    )
    .expect_err("both is ambiguous");
    assert!(both.to_string().contains("not both"), "{both}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A directory name no other test run uses.
fn oda_cdc_testkit_free_name(prefix: &str) -> String {
    format!(
        "oda-cdc-{prefix}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    )
    .replace(['(', ')'], "")
}

#[test]
fn failover_timeout_defaults_to_ten_seconds_and_is_bounded() {
    let s = load("", &[], &[]).expect("defaults");
    assert_eq!(s.producer.failover_timeout.get(), Duration::from_secs(10));
    let s = load("", &[("ODA_CDC_PRODUCER__FAILOVER_TIMEOUT", "30s")], &[]).expect("30s");
    assert_eq!(s.producer.failover_timeout.get(), Duration::from_secs(30));
    for refused in ["2s", "1h"] {
        let error = load(
            "[producer]\nfailover_timeout = \"x\"\n"
                .replace('x', refused)
                .as_str(),
            &[],
            &[],
        )
        .expect_err(refused)
        .to_string();
        assert!(error.contains("producer.failover_timeout"), "{error}");
    }
}

#[test]
fn postgres_url_comes_from_database_url_and_bad_values_name_their_key() {
    let s = load("", &[], &[]).expect("defaults");
    assert!(s.postgres.url.is_none());
    assert_eq!(s.postgres.schema, "oda");

    let url = "postgres://sink:hunter2@db.internal:5433/parliament";
    let s = load("", &[("DATABASE_URL", url)], &[]).expect("a URL");
    assert_eq!(s.postgres.url.as_ref().map(Secret::expose), Some(url));
    assert!(
        !format!("{s:?}").contains("hunter2"),
        "the URL may carry a password and must not be shown"
    );
    let s = load(
        "",
        &[],
        &[("postgres.url", "host=/run/db dbname=oda user=sink")],
    )
    .expect("key=value pairs");
    assert!(s.postgres.url.is_some());

    for (key, value) in [
        ("postgres.url", "mysql://x@y/z"),
        ("postgres.url", "just words"),
        ("postgres.schema", "Oda"),
        ("postgres.schema", "oda; drop table x"),
        ("postgres.schema", ""),
    ] {
        match load("", &[], &[(key, value)]) {
            Err(ConfigError::InvalidValue { key: named, .. }) => assert_eq!(named, key, "{value}"),
            other => panic!("{key} = {value:?} was accepted: {other:?}"),
        }
    }
}
