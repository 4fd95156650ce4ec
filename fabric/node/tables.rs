//! An epoch's sealed chunks as a DataFusion table, the input of the query stage.
//!
//! The table is named after the dataset and has the columns of the sealed chunk files:
//! `_chunk` and `_row` (which chunk and row a record sits in), then every declared column
//! as `UInt64` codes. It reads exactly the chunk files the epoch's signed manifest lists,
//! so a query over epoch E sees E's rows whatever was sealed after it.
//!
//! ```no_run
//! # async fn example(store: &zkfabric::node::store::Store) -> Result<(), Box<dyn std::error::Error>> {
//! use datafusion::prelude::SessionContext;
//!
//! let ctx = SessionContext::new();
//! zkfabric::node::tables::register_epoch(&ctx, store, "consumption", None)?;
//! let per_chunk = ctx
//!     .sql("SELECT _chunk, district, SUM(kwh) FROM consumption GROUP BY _chunk, district")
//!     .await?
//!     .collect()
//!     .await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use datafusion::{
    datasource::{
        file_format::parquet::ParquetFormat,
        listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl},
    },
    error::DataFusionError,
    prelude::SessionContext,
};

use crate::{
    node::store::{Store, StoreError},
    shared::records,
    verifier::manifest::SignedManifest,
};

/// Why an epoch could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    /// The dataset or epoch is unknown, or the catalog failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// DataFusion refused the table.
    #[error("registering the table: {0}")]
    DataFusion(#[from] DataFusionError),
}

/// Registers the chunks of `epoch` of `dataset` (the latest when `None`) with `ctx` as
/// table `dataset`, and returns the epoch's signed manifest; an epoch that held rows a
/// donor has since withdrawn is refused (they are erased).
pub fn register_epoch(
    ctx: &SessionContext,
    store: &Store,
    dataset: &str,
    epoch: Option<u64>,
) -> Result<SignedManifest, TablesError> {
    let manifest = store.manifest(dataset, epoch)?;
    store.check_queryable(dataset, manifest.manifest.epoch)?;
    let schema = store.schema(dataset)?;
    let paths = manifest
        .manifest
        .chunks
        .iter()
        .map(|c| {
            let path = store.chunk_file(dataset, c.index)?;
            Ok(ListingTableUrl::parse(path.to_string_lossy())?)
        })
        .collect::<Result<Vec<_>, TablesError>>()?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(paths)
        .with_listing_options(options)
        .with_schema(records::stored_schema(&schema, true));
    ctx.register_table(dataset, Arc::new(ListingTable::try_new(config)?))?;
    Ok(manifest)
}
