//! The JSON query forms of ODA_API.md §5 answer as the real API would.

use serde_json::{Map, Value};

use crate::helpers::{Sim, ids};

/// Every record of a set as the store holds it, in id order.
fn records(sim: &Sim, set: &str) -> Vec<Map<String, Value>> {
    let world = sim.sim.state.world.read().expect("lock");
    let table = world.store.table(set).expect("set");
    table.iter().map(|(_, row)| table.row_map(row)).collect()
}

fn ids_where(sim: &Sim, set: &str, keep: impl Fn(&Map<String, Value>) -> bool) -> Vec<i64> {
    records(sim, set)
        .into_iter()
        .filter(|r| keep(r))
        .map(|r| r["id"].as_i64().expect("id"))
        .collect()
}

#[tokio::test]
async fn envelope_counts_and_next_link_chain_cover_every_row_once() {
    let sim = Sim::start(|c| c.scale = 20_000).await;
    let expected = ids_where(&sim, "Sag", |_| true);
    assert!(
        expected.len() > 250,
        "need several pages, have {}",
        expected.len()
    );

    let first = sim
        .json(&sim.api("Sag?$inlinecount=allpages&$orderby=id"))
        .await;
    assert_eq!(
        first["odata.metadata"],
        format!("{}/$metadata#Sag", sim.sim.base_url())
    );
    assert_eq!(
        first["odata.count"],
        Value::String(expected.len().to_string()),
        "count is a string"
    );
    assert_eq!(
        first["value"].as_array().expect("value").len(),
        100,
        "server page size"
    );
    let next = first["odata.nextLink"]
        .as_str()
        .expect("nextLink on a cut page");
    assert_eq!(
        next,
        format!(
            "{}/Sag?$inlinecount=allpages&$orderby=id&$skip=100",
            sim.sim.base_url()
        ),
        "absolute, options repeated, $skip last"
    );

    let (rows, pages) = sim
        .all_pages(&sim.api("Sag?$inlinecount=allpages&$orderby=id"))
        .await;
    assert_eq!(
        ids(&rows),
        expected,
        "the chain covers every row exactly once, in order"
    );
    assert_eq!(pages, expected.len().div_ceil(100));
    // Envelope key order as the server writes it.
    let text = sim
        .http
        .get(sim.api("Sag?$inlinecount=allpages&$top=1"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    let order: Vec<usize> = ["\"odata.metadata\"", "\"odata.count\"", "\"value\""]
        .iter()
        .map(|k| text.find(k).expect("key present"))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[tokio::test]
async fn top_at_or_below_page_size_has_no_next_link_and_above_is_capped() {
    let sim = Sim::start(|_| {}).await;
    let page = sim.json(&sim.api("Stemme?$top=100")).await;
    assert_eq!(page["value"].as_array().expect("value").len(), 100);
    assert!(
        page.get("odata.nextLink").is_none(),
        "no nextLink when $top <= page size"
    );

    let page = sim.json(&sim.api("Stemme?$top=150&$orderby=id")).await;
    assert_eq!(
        page["value"].as_array().expect("value").len(),
        100,
        "$top above the page size is capped"
    );
    let next = page["odata.nextLink"].as_str().expect("nextLink");
    assert!(next.ends_with("$top=50&$orderby=id&$skip=100"), "{next}");
    let rest = sim.json(next).await;
    assert_eq!(rest["value"].as_array().expect("value").len(), 50);
    assert!(rest.get("odata.nextLink").is_none());

    let page = sim
        .json(&sim.api("Stemme?$top=0&$inlinecount=allpages"))
        .await;
    assert_eq!(page["value"].as_array().expect("value").len(), 0);
    assert!(
        page["odata.count"]
            .as_str()
            .expect("count")
            .parse::<usize>()
            .expect("n")
            > 1000
    );
}

#[tokio::test]
async fn page_size_is_a_server_setting() {
    let sim = Sim::start(|c| c.page_size = 20).await;
    let page = sim.json(&sim.api("Aktør")).await;
    assert_eq!(page["value"].as_array().expect("value").len(), 20);
    let (rows, _) = sim.all_pages(&sim.api("Akt%C3%B8r")).await;
    assert_eq!(ids(&rows), ids_where(&sim, "Aktør", |_| true));
}

/// What a filter should select, written out in Rust.
type Predicate<'a> = Box<dyn Fn(&Map<String, Value>) -> bool + 'a>;

#[tokio::test]
async fn filters_of_real_clients_select_exactly_the_matching_rows() {
    let sim = Sim::start(|_| {}).await;
    let text = |r: &Map<String, Value>, f: &str| r[f].as_str().map(str::to_owned);
    let int = |r: &Map<String, Value>, f: &str| r[f].as_i64();
    let cases: Vec<(&str, &str, Predicate<'_>)> = vec![
        (
            "Sag",
            "typeid eq 3 and id gt 2000",
            Box::new(|r| int(r, "typeid") == Some(3) && int(r, "id") > Some(2000)),
        ),
        (
            "Sag",
            "nummerprefix eq 'L' or nummerprefix eq 'B'",
            Box::new(move |r| matches!(text(r, "nummerprefix").as_deref(), Some("L" | "B"))),
        ),
        (
            "Sag",
            "substringof('forsvar', titel)",
            Box::new(move |r| text(r, "titel").is_some_and(|t| t.contains("forsvar"))),
        ),
        (
            "Sag",
            "substringof('forsvar',titel) eq true",
            Box::new(move |r| text(r, "titel").is_some_and(|t| t.contains("forsvar"))),
        ),
        (
            "Sag",
            "startswith(titel,'Forslag')",
            Box::new(move |r| text(r, "titel").is_some_and(|t| t.starts_with("Forslag"))),
        ),
        (
            "Sag",
            "endswith(titel,'lov')",
            Box::new(move |r| text(r, "titel").is_some_and(|t| t.ends_with("lov"))),
        ),
        (
            "Sag",
            "not (typeid eq 3)",
            Box::new(|r| int(r, "typeid") != Some(3)),
        ),
        (
            "Stemme",
            "akt%C3%B8rid eq 5",
            Box::new(|r| int(r, "aktørid") == Some(5)),
        ),
        (
            "Sag",
            "paragraf eq null",
            Box::new(|r| r["paragraf"].is_null()),
        ),
        (
            "Sag",
            "paragraf eq ''",
            Box::new(move |r| text(r, "paragraf").as_deref() == Some("")),
        ),
        (
            "Sag",
            "opdateringsdato ge datetime'2020-01-01T00:00:00' and opdateringsdato lt datetime'2021-06-30T12:00:00.5'",
            Box::new(move |r| {
                let t = text(r, "opdateringsdato").expect("ts");
                t.as_str() >= "2020-01-01T00:00:00" && t.as_str() < "2021-06-30T12:00:00.5"
            }),
        ),
        (
            "Sag",
            "year(opdateringsdato) eq 2019 and month(opdateringsdato) eq 3",
            Box::new(move |r| {
                text(r, "opdateringsdato")
                    .expect("ts")
                    .starts_with("2019-03")
            }),
        ),
        (
            "AktørAktør",
            "slutdato eq null or slutdato ge datetime'2022-11-01T00:00:00'",
            Box::new(move |r| {
                text(r, "slutdato").is_none_or(|t| t.as_str() >= "2022-11-01T00:00:00")
            }),
        ),
    ];
    for (set, filter, keep) in cases {
        let expected = ids_where(&sim, set, keep);
        let url = sim.api(&format!(
            "{set}?$filter={filter}&$orderby=id&$inlinecount=allpages"
        ));
        let first = sim.json(&url).await;
        let (rows, _) = sim.all_pages(&url).await;
        assert_eq!(ids(&rows), expected, "{set} $filter={filter}");
        assert_eq!(
            first["odata.count"],
            Value::String(expected.len().to_string()),
            "{filter}"
        );
    }
}

#[tokio::test]
async fn orderby_several_keys_with_id_appended() {
    let sim = Sim::start(|_| {}).await;
    let (rows, _) = sim
        .all_pages(&sim.api("Sag?$orderby=typeid desc,opdateringsdato"))
        .await;
    let mut expected = records(&sim, "Sag");
    expected.sort_by(|a, b| {
        b["typeid"]
            .as_i64()
            .cmp(&a["typeid"].as_i64())
            .then(
                a["opdateringsdato"]
                    .as_str()
                    .cmp(&b["opdateringsdato"].as_str()),
            )
            .then(a["id"].as_i64().cmp(&b["id"].as_i64()))
    });
    assert_eq!(
        ids(&rows),
        ids(&expected.into_iter().map(Value::Object).collect::<Vec<_>>())
    );

    let (rows, _) = sim.all_pages(&sim.api("Sag?$orderby=id desc")).await;
    let mut expected = ids_where(&sim, "Sag", |_| true);
    expected.reverse();
    assert_eq!(ids(&rows), expected);
}

#[tokio::test]
async fn select_projects_fields_in_metadata_order() {
    let sim = Sim::start(|_| {}).await;
    let page = sim
        .json(&sim.api("Sag?$select=titel,id,opdateringsdato&$top=3"))
        .await;
    assert_eq!(
        page["odata.metadata"],
        format!(
            "{}/$metadata#Sag&$select=titel,id,opdateringsdato",
            sim.sim.base_url()
        )
    );
    for row in page["value"].as_array().expect("value") {
        let keys: Vec<&String> = row.as_object().expect("object").keys().collect();
        assert_eq!(keys.len(), 3, "{row}");
    }
    assert_eq!(sim.status(&sim.api("Sag?$select=nope")).await, 400);
}

#[tokio::test]
async fn single_entity_navigation_and_samples_are_served_as_captured() {
    let sim = Sim::start(|_| {}).await;
    let captured: Vec<Value> =
        serde_json::from_str(oda_model::samples::complete("Afstemning").expect("sample"))
            .expect("sample");
    for sample in captured {
        let id = sample["id"].as_i64().expect("id");
        let served = sim.json(&sim.api(&format!("Afstemning({id})"))).await;
        assert_eq!(
            served["odata.metadata"],
            format!("{}/$metadata#Afstemning/@Element", sim.sim.base_url())
        );
        let mut served = served.as_object().expect("object").clone();
        let mut sample = sample.as_object().expect("object").clone();
        served.remove("odata.metadata");
        sample.remove("odata.metadata");
        assert_eq!(
            served, sample,
            "Afstemning({id}) as captured from the real API"
        );
    }
    assert_eq!(sim.status(&sim.api("Sag(999999999)")).await, 404);

    let votes = sim
        .json(&sim.api("Afstemning(1)/Stemme?$inlinecount=allpages"))
        .await;
    assert_eq!(
        votes["odata.metadata"],
        format!("{}/$metadata#Stemme", sim.sim.base_url())
    );
    let expected = ids_where(&sim, "Stemme", |r| r["afstemningid"].as_i64() == Some(1));
    assert!(!expected.is_empty());
    assert_eq!(votes["odata.count"], expected.len().to_string());
    let (all, _) = sim.all_pages(&sim.api("Afstemning(1)/Stemme")).await;
    assert_eq!(ids(&all), expected, "navigation pages like a collection");
}

#[tokio::test]
async fn expand_one_and_two_levels_and_refuse_three() {
    let sim = Sim::start(|_| {}).await;
    // A generated vote whose meeting exists (the real samples point at
    // meetings the simulator does not hold: dangling keys expand to null).
    let meetings = ids_where(&sim, "Møde", |_| true);
    let vote_id = *ids_where(&sim, "Afstemning", |r| {
        r["mødeid"].as_i64().is_some_and(|m| meetings.contains(&m))
    })
    .first()
    .expect("a vote with a meeting");
    let vote = sim
        .json(&sim.api(&format!("Afstemning({vote_id})?$expand=Stemme,M%C3%B8de")))
        .await;
    let expected = ids_where(&sim, "Stemme", |r| {
        r["afstemningid"].as_i64() == Some(vote_id)
    });
    // Expanded collections are server-paged too, with a sibling nextLink.
    let shown = expected.len().min(100);
    assert_eq!(
        ids(vote["Stemme"].as_array().expect("expanded collection")),
        expected[..shown]
    );
    assert_eq!(
        vote["Stemme@odata.nextLink"].is_string(),
        expected.len() > 100
    );
    let meeting = vote["Møde"].as_object().expect("expanded entity");
    assert_eq!(meeting["id"], vote["mødeid"]);
    let dangling = sim.json(&sim.api("Afstemning(1)?$expand=M%C3%B8de")).await;
    assert!(
        dangling["Møde"].is_null(),
        "meeting 17 is not held: {dangling}"
    );

    let page = sim
        .json(&sim.api("Stemme?$filter=id gt 1000&$top=5&$expand=Afstemning/M%C3%B8de"))
        .await;
    let rows = page["value"].as_array().expect("value");
    assert_eq!(rows.len(), 5);
    for row in rows {
        let afstemning = &row["Afstemning"];
        assert_eq!(afstemning["id"], row["afstemningid"], "{row}");
        let held = afstemning["mødeid"]
            .as_i64()
            .is_some_and(|m| meetings.contains(&m));
        if held {
            assert_eq!(afstemning["Møde"]["id"], afstemning["mødeid"]);
        } else {
            assert!(afstemning["Møde"].is_null(), "dangling key: {afstemning}");
        }
    }
    assert_eq!(
        sim.status(&sim.api("Stemme?$expand=Afstemning/M%C3%B8de/Periode"))
            .await,
        400
    );
    assert_eq!(sim.status(&sim.api("Stemme?$expand=Nope")).await, 400);
}

#[tokio::test]
async fn errors_as_oda_gives_them() {
    let sim = Sim::start(|_| {}).await;
    for (path, status) in [
        ("InvalidEntity", 404),
        ("Sambehandlinger", 404),
        ("Sag?$filter=id eq", 400),
        ("Sag?$filter=(id eq 1", 400),
        ("Sag?$filter=titel eq 5", 400),
        ("Sag?$filter=nope eq 1", 400),
        ("Sag?$orderby=nope", 400),
        ("Sag?$top=x", 400),
        ("Sag?$skip=-1", 400),
        ("Sag?$bogus=1", 400),
        ("Sag?$format=json", 200),
    ] {
        assert_eq!(sim.status(&sim.api(path)).await, status, "{path}");
    }
    let body = sim
        .http
        .get(sim.api("Sag?$filter=id eq"))
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert!(body.is_empty(), "400 has an empty body");
}

#[tokio::test]
async fn unknown_filter_field_quirk_returns_the_unfiltered_set() {
    let sim = Sim::start(|c| c.ignore_unknown_filter_fields = true).await;
    let all = sim.json(&sim.api("Sag?$inlinecount=allpages&$top=5")).await;
    let quirk = sim
        .json(&sim.api("Sag?$filter=nope eq 1&$inlinecount=allpages&$top=5"))
        .await;
    assert_eq!(quirk["odata.count"], all["odata.count"]);
    assert_eq!(quirk["value"], all["value"]);
}

#[tokio::test]
async fn views_over_sag_behave_as_views() {
    let sim = Sim::start(|_| {}).await;
    let (rows, _) = sim.all_pages(&sim.api("Forslag?$orderby=id")).await;
    let expected = ids_where(&sim, "Sag", |r| matches!(r["typeid"].as_i64(), Some(3 | 5)));
    assert_eq!(ids(&rows), expected);
    let page = sim.json(&sim.api("Forslag")).await;
    assert_eq!(
        page["odata.metadata"],
        format!("{}/$metadata#Forslag", sim.sim.base_url())
    );
    let eusag = sim.json(&sim.api("EUsag?$inlinecount=allpages")).await;
    assert_eq!(eusag["odata.count"], "0");
    let almdel = sim.json(&sim.api("Almdel(7337)")).await;
    assert_eq!(almdel["typeid"], 1);
    assert_eq!(
        sim.status(&sim.api("Forslag(7337)")).await,
        404,
        "a Sag of another type is not in the view"
    );
}

#[tokio::test]
async fn metadata_document_lists_every_set_with_danish_names() {
    let sim = Sim::start(|_| {}).await;
    let xml = sim
        .http
        .get(sim.api("$metadata"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(xml.contains(r#"<EntitySet Name="Aktør" EntityType="FT.Domain.Models.Aktør"/>"#));
    assert!(
        xml.contains(r#"<Property Name="afgørelsesdato" Type="Edm.DateTime" Nullable="true"/>"#)
    );
    assert_eq!(xml.matches("<EntitySet ").count(), 50);
}

#[tokio::test]
async fn timestamps_are_danish_local_with_sql_server_precision() {
    let sim = Sim::start(|_| {}).await;
    let mut fraction_lengths = std::collections::BTreeSet::new();
    for set in ["Sag", "Stemme", "Dokument", "Aktør"] {
        for record in records(&sim, set) {
            let Some(ts) = record["opdateringsdato"].as_str() else {
                continue;
            };
            let fraction = ts.split_once('.').map_or("", |(_, f)| f);
            fraction_lengths.insert(fraction.len());
            assert!(!fraction.ends_with('0'), "trailing zeros are dropped: {ts}");
            if fraction.len() == 3 {
                let last = fraction.as_bytes()[2];
                assert!(
                    matches!(last, b'0' | b'3' | b'7'),
                    "SQL Server datetime: {ts}"
                );
            }
        }
    }
    assert_eq!(
        fraction_lengths.into_iter().collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
}
