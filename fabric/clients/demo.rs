//! The demo's data and questions, shared by `zkfabric demo` and the end-to-end bench:
//! generated household readings, ingested and sealed into a store, and three queries a
//! researcher would ask of them.

use std::path::Path;

use crate::{
    node::store::{Store, StoreError},
    shared::records::{self, RecordsError},
    shared::synth,
    verifier::schema::Schema,
};

/// One demo question.
#[derive(Clone, Copy, Debug)]
pub struct DemoQuery {
    /// Short name (bench ids, file names).
    pub name: &'static str,
    /// What it asks, in words.
    pub question: &'static str,
    /// The SQL.
    pub sql: &'static str,
    /// The consent purpose it runs under.
    pub purpose: &'static str,
}

/// The demo's questions: a GROUP BY a household attribute with SUM and AVG, a count under
/// a filter on an attribute, and a city-wide average over a time range (the generated
/// readings cover one week per household, from Monday 2026-01-05). Consumption is a dp
/// dataset whose privacy unit is a household of 168 readings, so every number comes back
/// noisy, with its interval, and each answer is charged to the dataset's budget.
pub const QUERIES: [DemoQuery; 3] = [
    DemoQuery {
        name: "load_by_size",
        question: "electricity by household size",
        sql: "SELECT household_size, COUNT(*), SUM(kwh), AVG(kwh) FROM consumption \
              GROUP BY household_size",
        purpose: "energy-research",
    },
    DemoQuery {
        name: "young_in_daan",
        question: "how many readings in Daan come from households of people under 30?",
        sql: "SELECT COUNT(*) FROM consumption WHERE district = 'Daan' AND age < 30",
        purpose: "public-health",
    },
    DemoQuery {
        name: "weekend_water",
        question: "water use at the weekend, city-wide",
        sql: "SELECT COUNT(*), AVG(water) FROM consumption WHERE time >= 1768003200",
        purpose: "public-health",
    },
];

/// Why the demo data could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Generating failed.
    #[error("generating: {0}")]
    Generate(String),
    /// Writing the generated file failed.
    #[error(transparent)]
    Records(#[from] RecordsError),
    /// Ingesting or sealing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Generates `rows` consumption readings into `dir/readings.parquet`, then ingests and
/// seals them into a store under `dir/data`.
pub fn prepare(dir: &Path, rows: usize, seed: u64) -> Result<Store, DemoError> {
    let schema = Schema::builtin("consumption").expect("a built-in dataset");
    prepare_with(dir, &schema, rows, seed)
}

/// [`prepare`] for another schema of a built-in dataset (say, with smaller chunks).
pub fn prepare_with(
    dir: &Path,
    schema: &Schema,
    rows: usize,
    seed: u64,
) -> Result<Store, DemoError> {
    let columns = synth::generate(schema, rows, seed, |_| {}).map_err(DemoError::Generate)?;
    let file = dir.join("readings.parquet");
    records::write_file(
        &file,
        records::arrow_schema(schema),
        [records::to_batch(schema, &columns, 0..rows)],
    )?;
    let mut store = Store::open(&dir.join("data"))?;
    store.register(schema)?;
    store.ingest(&schema.name, &[file], false)?;
    store.seal(&schema.name)?;
    Ok(store)
}
