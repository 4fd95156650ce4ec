//! Proving keys per circuit shape, cached under the data directory.
//!
//! Every shape has a canonical text ([`describe_aggregate`], [`describe_combine`]) that a
//! verifier recomputes from a bundle; its SHA-256 names the key file
//! (`DATA_DIR/keys/<hash>.pk`). Keys made here come from a single-party setup: whoever
//! ran it could forge proofs, so they are for development only.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
};

use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use zkfabric_circuits::{
    aggregate::{Aggregand, AggregateShape, FilterShape},
    combine::{CombineOutput, CombineShape},
    snark::{self, Circuit, ProvingKey},
    CircuitError,
};

use crate::records::{self, RecordsError};

/// Why a key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No key for the shape, and setup was not allowed.
    #[error("no proving key for {shape}; run `zkfabric setup` first")]
    Missing { shape: String },
    /// Reading or writing the key file failed.
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing the key file failed.
    #[error(transparent)]
    Write(#[from] RecordsError),
    /// The key file does not hold a key for the shape, or setup failed.
    #[error("key for {shape}: {source}")]
    Circuit {
        shape: String,
        #[source]
        source: CircuitError,
    },
}

/// The canonical text of a chunk circuit's shape.
pub fn describe_aggregate(shape: &AggregateShape) -> String {
    let layout = &shape.layout;
    let mut out = format!("aggregate/v1 rows={} columns=", layout.capacity());
    for (i, c) in layout.columns().iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let kind = if c.packed { "n" } else { "w" };
        let _ = write!(out, "{sep}{kind}{}", c.width);
    }
    let _ = write!(
        out,
        " present={} consent={} filters=",
        layout.present(),
        shape.consent
    );
    for (i, f) in shape.filters.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = match f {
            FilterShape::Range { column } => write!(out, "{sep}range:{column}"),
            FilterShape::In { column, len } => write!(out, "{sep}in:{column}:{len}"),
        };
    }
    let _ = match shape.group_by {
        Some(c) => write!(out, " group_by={c}"),
        None => write!(out, " group_by=none"),
    };
    let _ = write!(out, " groups={} aggregand=", shape.groups);
    let _ = match shape.aggregand {
        Aggregand::CountOnly => write!(out, "count"),
        Aggregand::Sum { column } => write!(out, "sum:{column}"),
        Aggregand::CountWhere { column } => write!(out, "count_where:{column}"),
    };
    out
}

/// The canonical text of a combine circuit's shape.
pub fn describe_combine(shape: &CombineShape) -> String {
    let output = match shape.output {
        CombineOutput::Release => "release",
        CombineOutput::Predicate => "predicate",
        CombineOutput::Subtotal => "subtotal",
    };
    format!(
        "combine/v1 inputs={} groups={} output={output}",
        shape.inputs, shape.groups
    )
}

/// Proving keys under a data directory.
pub struct KeyCache {
    dir: PathBuf,
}

impl KeyCache {
    /// The cache under `data_dir/keys`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("keys"),
        }
    }

    fn path(&self, description: &str) -> PathBuf {
        let hash = hex::encode(Sha256::digest(description.as_bytes()));
        self.dir.join(format!("{}.pk", &hash[..32]))
    }

    /// Whether a key for the shape described by `description` is cached.
    pub fn has(&self, description: &str) -> bool {
        self.path(description).exists()
    }

    /// The cached key for `shape`; with `setup`, one is made (and cached) when missing,
    /// after calling `on_setup` so the caller can warn that it is a development key.
    pub fn get<C: Circuit>(
        &self,
        shape: &C::Shape,
        description: &str,
        setup: bool,
        on_setup: impl FnOnce(&str),
    ) -> Result<ProvingKey, KeyError> {
        let path = self.path(description);
        let circuit_error = |source| KeyError::Circuit {
            shape: description.to_string(),
            source,
        };
        if path.exists() {
            let bytes = fs::read(&path).map_err(|source| KeyError::Io {
                path: path.clone(),
                source,
            })?;
            return ProvingKey::from_bytes::<C>(&bytes, shape).map_err(circuit_error);
        }
        if !setup {
            return Err(KeyError::Missing {
                shape: description.to_string(),
            });
        }
        on_setup(description);
        let key = snark::setup::<C, _>(shape, &mut OsRng).map_err(circuit_error)?;
        fs::create_dir_all(&self.dir).map_err(|source| KeyError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let bytes = key.to_bytes();
        records::write_atomically(&path, |mut file| {
            use std::io::Write;
            file.write_all(&bytes).map_err(|source| RecordsError::Io {
                file: path.clone(),
                source,
            })
        })?;
        tracing::info!(shape = description, "cached a development proving key");
        Ok(key)
    }
}
