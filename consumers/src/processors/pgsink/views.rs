//! Views that answer the questions people bring to the Parliament's data,
//! made when the tables they read are mirrored (docs/pg-sink.md shows
//! them in use).

use tokio_postgres::GenericClient;

use super::column::quoted;

/// One view: its name, the tables it reads, its query (`{s}` stands for
/// the quoted schema).
struct View {
    name: &'static str,
    reads: &'static [&'static str],
    query: &'static str,
}

/// The current stage of each case: its latest step (`Sagstrin`, by date,
/// then id), with the names of the step's type and status and the case's
/// own status.
const SAG_CURRENT_STAGE: View = View {
    name: "sag_current_stage",
    reads: &[
        "sag",
        "sagstrin",
        "sagsstatus",
        "sagstrinstype",
        "sagstrinsstatus",
    ],
    query: r#"
SELECT s.id AS sagid, s.nummer, s.titelkort, s.titel, ss.status AS sag_status,
       t.id AS sagstrinid, t.titel AS sagstrin, tt.type AS sagstrin_type,
       ts.status AS sagstrin_status, t.dato AS sagstrin_dato
FROM {s}.sag s
LEFT JOIN LATERAL (
  SELECT x.* FROM {s}.sagstrin x
  WHERE x.sagid = s.id
  ORDER BY x.dato DESC NULLS LAST, x.id DESC
  LIMIT 1
) t ON true
LEFT JOIN {s}.sagsstatus ss ON ss.id = s.statusid
LEFT JOIN {s}.sagstrinstype tt ON tt.id = t.typeid
LEFT JOIN {s}.sagstrinsstatus ts ON ts.id = t.statusid
"#,
};

/// How each party voted in each division on each case: votes counted per
/// party and vote type. A member's party is the `Folketingsgruppe` they
/// were related to (`AktørAktør`, either direction) on the meeting's
/// date; of several, the relation that began last, as oda-votes counts.
const PARTY_VOTES: View = View {
    name: "party_votes",
    reads: &[
        "stemme",
        "stemmetype",
        "afstemning",
        "moede",
        "sagstrin",
        "sag",
        "aktoer",
        "aktoertype",
        "aktoeraktoer",
    ],
    query: r#"
WITH membership AS (
  SELECT CASE WHEN r."fraaktørid" = p.id THEN r."tilaktørid" ELSE r."fraaktørid" END AS member,
         coalesce(p.gruppenavnkort, p.navn) AS party,
         r.startdato, r.slutdato
  FROM {s}.aktoeraktoer r
  JOIN {s}.aktoer p ON p.id IN (r."fraaktørid", r."tilaktørid")
  JOIN {s}.aktoertype pt ON pt.id = p.typeid AND pt.type = 'Folketingsgruppe'
),
vote AS (
  SELECT v."aktørid" AS member, v.afstemningid, vt.type AS vote,
         a.sagstrinid, a.vedtaget, m.dato AS dato
  FROM {s}.stemme v
  JOIN {s}.afstemning a ON a.id = v.afstemningid
  LEFT JOIN {s}.stemmetype vt ON vt.id = v.typeid
  LEFT JOIN {s}."moede" m ON m.id = a."mødeid"
)
SELECT st.sagid, s.nummer, s.titelkort, vote.afstemningid, vote.vedtaget,
       coalesce(mb.party, 'ukendt') AS party, coalesce(vote.vote, 'ukendt') AS vote,
       count(*) AS votes
FROM vote
LEFT JOIN {s}.sagstrin st ON st.id = vote.sagstrinid
LEFT JOIN {s}.sag s ON s.id = st.sagid
LEFT JOIN LATERAL (
  SELECT party FROM membership x
  WHERE x.member = vote.member
    AND (x.startdato IS NULL OR x.startdato::date <= vote.dato::date)
    AND (x.slutdato IS NULL OR vote.dato::date <= x.slutdato::date)
  ORDER BY x.startdato DESC NULLS LAST
  LIMIT 1
) mb ON true
GROUP BY 1, 2, 3, 4, 5, 6, 7
"#,
};

const VIEWS: &[View] = &[SAG_CURRENT_STAGE, PARTY_VOTES];

/// Makes (or remakes) every view whose tables are all in `present`.
pub(crate) async fn create(
    client: &impl GenericClient,
    schema: &str,
    present: &[String],
) -> Result<(), tokio_postgres::Error> {
    let s = quoted(schema);
    for view in VIEWS {
        if !view.reads.iter().all(|t| present.iter().any(|p| p == t)) {
            tracing::debug!(view = view.name, "A table the view reads is not mirrored.");
            continue;
        }
        client
            .batch_execute(&format!(
                "CREATE OR REPLACE VIEW {s}.{} AS {}",
                view.name,
                view.query.replace("{s}", &s)
            ))
            .await?;
    }
    Ok(())
}

/// Drops every view (before a table they read is swapped).
pub(crate) async fn drop_all(
    client: &impl GenericClient,
    schema: &str,
) -> Result<(), tokio_postgres::Error> {
    let s = quoted(schema);
    for view in VIEWS {
        client
            .batch_execute(&format!("DROP VIEW IF EXISTS {s}.{}", view.name))
            .await?;
    }
    Ok(())
}
