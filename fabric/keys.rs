//! Proving keys per circuit shape, cached under the data directory.
//!
//! Every shape has a canonical text ([`describe_aggregate`], [`describe_combine`]) that a
//! verifier recomputes from a bundle; its SHA-256 names the key file
//! (`DATA_DIR/keys/<hash>.pk`). Keys made here come from a single-party setup: whoever
//! ran it could forge proofs, so they are for development only.

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
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
    /// The key file holds another key than the one the node published.
    #[error("{path} holds a key with fingerprint {found}, not the published {published}; remove it and its .vk file and run `zkfabric setup` again", path = path.display())]
    Changed {
        path: PathBuf,
        published: String,
        found: String,
    },
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
    let mut out = format!("aggregate/v2 rows={} columns=", layout.capacity());
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

/// What a node publishes of one of its keys: the verifying key, its fingerprint, and the
/// size of the circuit, kept beside the proving key (`<hash>.vk`, JSON) so that listing
/// keys or estimating a proof does not load proving keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The canonical shape description.
    pub shape: String,
    /// `sha256:...` of the compressed verifying key.
    pub fingerprint: String,
    /// Constraints of one proof.
    pub constraints: u64,
    /// The compressed verifying key, hex.
    pub verifying_key: String,
}

impl KeyInfo {
    fn of(shape: &str, key: &ProvingKey) -> Self {
        Self {
            shape: shape.to_string(),
            fingerprint: snark::fingerprint(key.verifying_key()),
            constraints: key.matrices().num_constraints as u64,
            verifying_key: hex::encode(snark::verifying_key_to_bytes(key.verifying_key())),
        }
    }
}

/// Proving keys under a data directory, kept in memory once loaded: a long-running node
/// loads each key once.
pub struct KeyCache {
    dir: PathBuf,
    loaded: Mutex<HashMap<String, Arc<ProvingKey>>>,
}

impl KeyCache {
    /// The cache under `data_dir/keys`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("keys"),
            loaded: Mutex::default(),
        }
    }

    fn path(&self, description: &str, extension: &str) -> PathBuf {
        let hash = hex::encode(Sha256::digest(description.as_bytes()));
        self.dir.join(format!("{}.{extension}", &hash[..32]))
    }

    /// Whether a key for the shape described by `description` is cached.
    pub fn has(&self, description: &str) -> bool {
        self.path(description, "pk").exists()
    }

    /// The published part of the key for `description`, if the node has that key.
    pub fn info(&self, description: &str) -> Option<KeyInfo> {
        let text = fs::read_to_string(self.path(description, "vk")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The published part of every key the node has, ordered by shape.
    pub fn infos(&self) -> Result<Vec<KeyInfo>, KeyError> {
        let io = |source| KeyError::Io {
            path: self.dir.clone(),
            source,
        };
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "vk") {
                let text = fs::read_to_string(&path).map_err(|source| KeyError::Io {
                    path: path.clone(),
                    source,
                })?;
                if let Ok(info) = serde_json::from_str::<KeyInfo>(&text) {
                    out.push(info);
                }
            }
        }
        out.sort_by(|a, b| a.shape.cmp(&b.shape));
        Ok(out)
    }

    /// The key for `shape`: from memory, else from disk; with `setup`, one is made (and
    /// cached) when missing, after calling `on_setup` so the caller can warn that it is a
    /// development key.
    pub fn get<C: Circuit>(
        &self,
        shape: &C::Shape,
        description: &str,
        setup: bool,
        on_setup: impl FnOnce(&str),
    ) -> Result<Arc<ProvingKey>, KeyError> {
        if let Some(key) = self.loaded.lock().expect("not poisoned").get(description) {
            return Ok(key.clone());
        }
        let path = self.path(description, "pk");
        let circuit_error = |source| KeyError::Circuit {
            shape: description.to_string(),
            source,
        };
        let key = if path.exists() {
            let started = std::time::Instant::now();
            let bytes = fs::read(&path).map_err(|source| KeyError::Io {
                path: path.clone(),
                source,
            })?;
            // Loaded unchecked (fast), so only if it is the key the node published.
            let key = ProvingKey::from_bytes::<C>(&bytes, shape).map_err(circuit_error)?;
            if let Some(published) = self.info(description) {
                let fingerprint = snark::fingerprint(key.verifying_key());
                if fingerprint != published.fingerprint {
                    return Err(KeyError::Changed {
                        path,
                        published: published.fingerprint,
                        found: fingerprint,
                    });
                }
            }
            tracing::info!(
                shape = description,
                seconds = started.elapsed().as_secs_f64(),
                "loaded a proving key"
            );
            key
        } else if setup {
            on_setup(description);
            let key = snark::setup::<C, _>(shape, &mut OsRng).map_err(circuit_error)?;
            fs::create_dir_all(&self.dir).map_err(|source| KeyError::Io {
                path: self.dir.clone(),
                source,
            })?;
            write(&path, &key.to_bytes())?;
            tracing::info!(shape = description, "cached a development proving key");
            key
        } else {
            return Err(KeyError::Missing {
                shape: description.to_string(),
            });
        };
        let info_path = self.path(description, "vk");
        if !info_path.exists() {
            let info = KeyInfo::of(description, &key);
            write(
                &info_path,
                serde_json::to_string_pretty(&info)
                    .expect("serializable")
                    .as_bytes(),
            )?;
        }
        let key = Arc::new(key);
        self.loaded
            .lock()
            .expect("not poisoned")
            .insert(description.to_string(), key.clone());
        Ok(key)
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    records::write_atomically(path, |mut file| {
        use std::io::Write;
        file.write_all(bytes).map_err(|source| RecordsError::Io {
            file: path.to_path_buf(),
            source,
        })
    })?;
    Ok(())
}
