//! oda-votes against a parliament built in the test: members who change
//! party, votes that arrive before their division, votes changed, moved
//! and deleted, a division deleted. One instance, and two instances with a
//! rebalance each way (B joins mid-stream, A leaves mid-stream), must both
//! end with exactly the tallies the test computes on its own.

use std::collections::BTreeMap;
use std::process::Child;
use std::time::Duration;

use oda_cdc_testkit::{create_topic, free_port, terminate, unique};
use oda_model::event::{ChangeEvent, Op, headers};
use oda_model::topics::Topics;
use serde_json::{Value, json};

use crate::harness::{Fixture, event, processor, produce, read_at_least};

const DIVISIONS: i64 = 240;
/// Members 1000..1000+MEMBERS; every one votes in every division.
const MEMBERS: i64 = 150;
const PARTIES: [(i64, &str); 4] = [(1, "S"), (2, "V"), (3, "EL"), (4, "DF")];
/// The day members with id % 10 == 0 change party.
const SWITCH: &str = "2022-07-01";

fn stemme_id(division: i64, member: i64) -> i64 {
    division * 10_000 + member
}

/// The party of `member` on `date` as the relations below make it.
fn party_on(member: i64, date: &str) -> Option<i64> {
    if member % 17 == 0 {
        return None; // no group at all
    }
    let first = member % 4 + 1;
    if member % 10 == 0 && date >= SWITCH {
        Some(first % 4 + 1)
    } else {
        Some(first)
    }
}

fn meeting_date(meeting: i64) -> String {
    // Meetings 1..=24, one a month from 2021-01.
    let month = meeting - 1;
    format!("{}-{:02}-15", 2021 + month / 12, month % 12 + 1)
}

fn meeting_of(division: i64) -> i64 {
    division % 24 + 1
}

/// The ground truth: division → (stemme → (member, typeid)).
struct Parliament {
    votes: BTreeMap<i64, BTreeMap<i64, (i64, i64)>>,
    deleted_divisions: Vec<i64>,
}

fn upsert(entity: &str, id: i64, op: Op, after: Value) -> Fixture {
    let mut e = event(entity, id, after);
    e.op = op;
    Fixture::event(&e)
}

fn delete(entity: &str, id: i64) -> Vec<Fixture> {
    let gone = ChangeEvent::new(
        Op::Delete,
        entity,
        id,
        None,
        None,
        "http://127.0.0.1:8089/api",
        &oda_model::odatime::format_utc(chrono::Utc::now()),
    );
    vec![
        Fixture::event(&gone),
        Fixture {
            key: id.to_string(),
            value: None,
            headers: vec![
                (headers::ENTITY, entity.to_owned()),
                (headers::OP, "d".to_owned()),
            ],
        },
    ]
}

fn stemme(id: i64, division: i64, member: i64, typeid: i64, op: Op) -> Fixture {
    upsert(
        "Stemme",
        id,
        op,
        json!({"id": id, "typeid": typeid, "afstemningid": division, "aktørid": member,
               "opdateringsdato": "2024-01-01T10:00:00"}),
    )
}

fn afstemning(id: i64) -> Fixture {
    upsert(
        "Afstemning",
        id,
        Op::Create,
        json!({"id": id, "nummer": id % 400, "konklusion": "Vedtaget", "vedtaget": id % 3 != 0,
               "kommentar": null, "mødeid": meeting_of(id), "typeid": 1, "sagstrinid": null,
               "opdateringsdato": "2024-01-01T10:00:00"}),
    )
}

/// The tables (types, parties, members, relations, meetings).
fn tables() -> Vec<(&'static str, Vec<Fixture>)> {
    let types = [
        (1, "For"),
        (2, "Imod"),
        (3, "Fravær"),
        (4, "Hverken for eller imod"),
    ]
    .iter()
    .map(|(id, label)| {
        upsert(
            "Stemmetype",
            *id,
            Op::Read,
            json!({"id": id, "type": label}),
        )
    })
    .collect();
    let actor_types = [(4, "Folketingsgruppe"), (5, "Person")]
        .iter()
        .map(|(id, label)| upsert("Aktørtype", *id, Op::Read, json!({"id": id, "type": label})))
        .collect();
    let mut actors: Vec<Fixture> = PARTIES
        .iter()
        .map(|(id, short)| {
            upsert(
                "Aktør",
                *id,
                Op::Read,
                json!({"id": id, "typeid": 4, "gruppenavnkort": short, "navn": format!("Partiet {short}")}),
            )
        })
        .collect();
    let mut relations = Vec::new();
    for member in 1000..1000 + MEMBERS {
        actors.push(upsert(
            "Aktør",
            member,
            Op::Read,
            json!({"id": member, "typeid": 5, "gruppenavnkort": null, "navn": format!("Medlem {member}")}),
        ));
        if member % 17 == 0 {
            continue;
        }
        let first = member % 4 + 1;
        let (until, then) = if member % 10 == 0 {
            (Some(format!("{SWITCH}T00:00:00")), Some(first % 4 + 1))
        } else {
            (None, None)
        };
        // The group stands on either side, as sources disagree.
        let (from, to) = if member % 2 == 0 {
            (member, first)
        } else {
            (first, member)
        };
        relations.push(upsert(
            "AktørAktør",
            member * 10,
            Op::Read,
            json!({"id": member * 10, "fraaktørid": from, "tilaktørid": to, "rolleid": 15,
                   "startdato": "2019-06-05T00:00:00", "slutdato": until}),
        ));
        if let Some(next) = then {
            relations.push(upsert(
                "AktørAktør",
                member * 10 + 1,
                Op::Read,
                json!({"id": member * 10 + 1, "fraaktørid": member, "tilaktørid": next, "rolleid": 15,
                       "startdato": format!("{SWITCH}T00:00:00"), "slutdato": null}),
            ));
        }
    }
    let meetings = (1..=24)
        .map(|m| {
            upsert(
                "Møde",
                m,
                Op::Read,
                json!({"id": m, "dato": format!("{}T10:00:00", meeting_date(m))}),
            )
        })
        .collect();
    vec![
        ("Stemmetype", types),
        ("Aktørtype", actor_types),
        ("Aktør", actors),
        ("AktørAktør", relations),
        ("Møde", meetings),
    ]
}

/// One part of the streams: Stemme fixtures, Afstemning fixtures.
type Part = (Vec<Fixture>, Vec<Fixture>);

/// The streams in four parts, and the truth they add up to. Divisions
/// above 200 get their Afstemning only in the last part: their votes wait.
fn streams() -> (Vec<Part>, Parliament) {
    let mut truth = Parliament {
        votes: BTreeMap::new(),
        deleted_divisions: vec![17],
    };
    let mut parts: Vec<Part> = (0..4).map(|_| (vec![], vec![])).collect();
    for division in 1..=DIVISIONS {
        let part = ((division - 1) * 3 / DIVISIONS) as usize;
        let home = if division <= 200 { part } else { 3 };
        parts[home].1.push(afstemning(division));
        for member in 1000..1000 + MEMBERS {
            let id = stemme_id(division, member);
            let typeid = (division + member) % 4 + 1;
            parts[part]
                .0
                .push(stemme(id, division, member, typeid, Op::Read));
            truth
                .votes
                .entry(division)
                .or_default()
                .insert(id, (member, typeid));
        }
    }
    // Changes in the last part: a changed vote, a deleted vote, a vote
    // moved to another division (other partition: 5 vs 10 of 6), a
    // deleted division.
    let last = &mut parts[3];
    let changed = stemme_id(5, 1003);
    last.0.push(stemme(changed, 5, 1003, 2, Op::Update));
    truth.votes.entry(5).or_default().insert(changed, (1003, 2));
    for gone in [stemme_id(6, 1004), stemme_id(201, 1005)] {
        last.0.extend(delete("Stemme", gone));
        for votes in truth.votes.values_mut() {
            votes.remove(&gone);
        }
    }
    let moved = stemme_id(7, 1006);
    last.0.push(stemme(moved, 10, 1006, 1, Op::Update));
    truth.votes.entry(7).or_default().remove(&moved);
    truth.votes.entry(10).or_default().insert(moved, (1006, 1));
    last.1.extend(delete("Afstemning", 17));
    (parts, truth)
}

/// A meeting moved after the votes were counted: (meeting, new date).
type Moved = Option<(i64, &'static str)>;

fn date_of(meeting: i64, moved: Moved) -> String {
    match moved {
        Some((m, date)) if m == meeting => date.to_owned(),
        _ => meeting_date(meeting),
    }
}

/// The tally document the test expects for `division`.
fn expected_tally(truth: &Parliament, division: i64, moved: Moved) -> Value {
    let kinds = ["for", "imod", "fravaerende", "hverken"];
    let zero = || {
        let mut m: BTreeMap<&str, u64> = BTreeMap::new();
        for k in ["for", "imod", "hverken", "fravaerende", "ukendt"] {
            m.insert(k, 0);
        }
        m
    };
    let date = date_of(meeting_of(division), moved);
    let mut totals = zero();
    let mut parties: BTreeMap<&str, (i64, BTreeMap<&str, u64>)> = BTreeMap::new();
    let mut without = zero();
    let votes = &truth.votes[&division];
    for (member, typeid) in votes.values() {
        let kind = kinds[(*typeid - 1) as usize];
        *totals.get_mut(kind).expect("kind") += 1;
        match party_on(*member, &date) {
            Some(p) => {
                let label = PARTIES[(p - 1) as usize].1;
                *parties
                    .entry(label)
                    .or_insert_with(|| (p, zero()))
                    .1
                    .get_mut(kind)
                    .expect("kind") += 1;
            }
            None => *without.get_mut(kind).expect("kind") += 1,
        }
    }
    let by_party: serde_json::Map<String, Value> = parties
        .into_iter()
        .map(|(label, (id, counts))| {
            let mut entry = json!({"aktoerid": id});
            for (k, n) in counts {
                entry[k] = json!(n);
            }
            (label.to_owned(), entry)
        })
        .collect();
    json!({"date": date, "votes": votes.len(), "tally": totals, "by_party": by_party,
           "party_unresolved": without})
}

/// The parts of a tally document the truth fixes.
fn comparable(document: &Value) -> Value {
    json!({
        "date": document["date"],
        "votes": document["votes"],
        "tally": document["tally"],
        "by_party": document["by_party"],
        "party_unresolved": document["party_unresolved"],
    })
}

/// The newest document per key (a tombstone removes the key).
async fn latest(topic: &str) -> BTreeMap<i64, Value> {
    let mut out = BTreeMap::new();
    for record in read_at_least(topic, 0, Duration::ZERO).await {
        let Some(key) = record.key.as_deref().and_then(|k| k.parse::<i64>().ok()) else {
            continue;
        };
        match record.value.as_deref().map(serde_json::from_slice::<Value>) {
            Some(Ok(document)) => {
                out.insert(key, document);
            }
            _ => {
                out.remove(&key);
            }
        }
    }
    out
}

fn expected(truth: &Parliament, moved: Moved) -> BTreeMap<i64, Value> {
    (1..=DIVISIONS)
        .filter(|d| !truth.deleted_divisions.contains(d))
        .map(|d| (d, expected_tally(truth, d, moved)))
        .collect()
}

/// Waits until the output agrees with the truth; returns what it holds.
async fn converged(topic: &str, want: &BTreeMap<i64, Value>) -> BTreeMap<i64, Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let have = latest(topic).await;
        let same = have.len() == want.len()
            && have
                .iter()
                .all(|(k, doc)| want.get(k) == Some(&comparable(doc)));
        if same || tokio::time::Instant::now() > deadline {
            return have;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn spawn(prefix: &str, group: &str, instance: &str, port: u16) -> Child {
    processor(
        env!("CARGO_BIN_EXE_oda-votes"),
        prefix,
        group,
        instance,
        port,
    )
    // A stopped static member leaves at its session's end: keep it short.
    .args(["--kafka-property", "session.timeout.ms=6000"])
    .spawn()
    .expect("oda-votes starts")
}

async fn prepare(prefix: &str) {
    for (entity, fixtures) in tables() {
        let topic = Topics::new(prefix, None).entity(entity);
        create_topic(&topic, 1).await.expect("table topic");
        produce(&topic, fixtures).await;
    }
    for entity in ["Stemme", "Afstemning"] {
        create_topic(&Topics::new(prefix, None).entity(entity), 6)
            .await
            .expect("input topic");
    }
}

async fn feed(prefix: &str, part: Part) {
    let (votes, divisions) = part;
    produce(&Topics::new(prefix, None).entity("Stemme"), votes).await;
    produce(&Topics::new(prefix, None).entity("Afstemning"), divisions).await;
}

fn assert_matches(have: &BTreeMap<i64, Value>, want: &BTreeMap<i64, Value>, run: &str) {
    let missing: Vec<_> = want
        .keys()
        .filter(|k| !have.contains_key(k))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "{run}: divisions without a tally: {missing:?}"
    );
    let extra: Vec<_> = have.keys().filter(|k| !want.contains_key(k)).collect();
    assert!(
        extra.is_empty(),
        "{run}: tallies that should not exist: {extra:?}"
    );
    for (division, document) in have {
        assert_eq!(
            comparable(document),
            want[division],
            "{run}: tally of Afstemning {division}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_and_two_through_rebalances_give_the_true_tallies() {
    let (_, truth) = streams();
    let want = expected(&truth, None);
    assert!(
        want.values()
            .any(|t| t["party_unresolved"]["for"].as_u64() > Some(0)),
        "the fixtures include members without a party"
    );

    // One instance.
    let single = unique("it-votes1");
    prepare(&single).await;
    let port = free_port();
    let mut only = spawn(&single, &unique("votes-g1"), "only", port);
    for part in streams().0 {
        feed(&single, part).await;
    }
    let processed = Topics::new(&single, None).processor_output("votes");
    let one = converged(&processed, &want).await;
    assert_matches(&one, &want, "one instance");

    // A meeting's date moves past the day members switch party, with no
    // vote arriving: the idle instance recounts and rewrites its tallies.
    let moved: Moved = Some((1, "2023-01-15"));
    produce(
        &Topics::new(&single, None).entity("Møde"),
        vec![upsert(
            "Møde",
            1,
            Op::Update,
            json!({"id": 1, "dato": "2023-01-15T10:00:00"}),
        )],
    )
    .await;
    let recounted = expected(&truth, moved);
    assert_ne!(recounted, want, "the move changes some tallies");
    let after = converged(&processed, &recounted).await;
    assert_matches(&after, &recounted, "one instance, after the meeting moved");
    let status = terminate(&mut only, Duration::from_secs(10)).await;
    assert!(status.success(), "exits 0 on SIGTERM: {status:?}");

    // Two instances: B joins after the first part, A leaves after the third.
    let double = unique("it-votes2");
    prepare(&double).await;
    let group = unique("votes-g2");
    let (port_a, port_b) = (free_port(), free_port());
    let mut parts = streams().0.into_iter();
    let mut a = spawn(&double, &group, "a", port_a);
    feed(&double, parts.next().expect("part 1")).await;
    let processed = Topics::new(&double, None).processor_output("votes");
    read_at_least(&processed, 20, Duration::from_secs(60)).await;
    let mut b = spawn(&double, &group, "b", port_b);
    feed(&double, parts.next().expect("part 2")).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    feed(&double, parts.next().expect("part 3")).await;
    let status = terminate(&mut a, Duration::from_secs(10)).await;
    assert!(status.success(), "A exits 0 on SIGTERM: {status:?}");
    feed(&double, parts.next().expect("part 4")).await;
    let two = converged(&processed, &want).await;
    let status = terminate(&mut b, Duration::from_secs(10)).await;
    assert!(status.success(), "B exits 0 on SIGTERM: {status:?}");
    assert_matches(&two, &want, "two instances");
    assert_eq!(
        one.iter()
            .map(|(k, d)| (k, comparable(d)))
            .collect::<Vec<_>>(),
        two.iter()
            .map(|(k, d)| (k, comparable(d)))
            .collect::<Vec<_>>(),
        "the same tallies either way"
    );
}

/// On a fresh cluster oda-votes may start before the producer has made the
/// table topics: it counts what it can (no date, no parties), follows the
/// tables once they appear and rewrites every tally then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_that_appear_after_the_start_are_followed_and_counted() {
    let (parts, truth) = streams();
    let want = expected(&truth, None);
    let prefix = unique("it-votes3");
    for entity in ["Stemme", "Afstemning"] {
        create_topic(&Topics::new(&prefix, None).entity(entity), 6)
            .await
            .expect("input topic");
    }
    let mut votes = spawn(&prefix, &unique("votes-g3"), "late", free_port());
    for part in parts {
        feed(&prefix, part).await;
    }
    let processed = Topics::new(&prefix, None).processor_output("votes");
    // Without tables: every division counted, none with a date.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let early = latest(&processed).await;
        if early.len() == want.len() {
            assert!(
                early
                    .values()
                    .all(|d| d["date"].is_null() && d["by_party"] == json!({})),
                "no tables yet, so no dates and no parties"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tallies without tables"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (entity, fixtures) in tables() {
        let topic = Topics::new(&prefix, None).entity(entity);
        create_topic(&topic, 1).await.expect("table topic");
        produce(&topic, fixtures).await;
    }
    let after = converged(&processed, &want).await;
    let status = terminate(&mut votes, Duration::from_secs(10)).await;
    assert!(status.success(), "exits 0 on SIGTERM: {status:?}");
    assert_matches(&after, &want, "tables created after the start");
}
