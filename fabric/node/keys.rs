//! Proving keys per circuit shape, cached under the data directory.
//!
//! Every shape has a canonical text ([`AggregateShape::description`],
//! [`CombineShape::description`], [`EligibilityShape::description`], [`WithdrawalShape::DESCRIPTION`]) that a verifier recomputes from a
//! bundle and [`Shape::parse`] reads back; its SHA-256 names the key file
//! (`DATA_DIR/keys/<hash>.pk`). A key comes from one of two places:
//! - development: a single-party setup made here on demand; whoever ran it could forge
//!   proofs;
//! - ceremony: a multi-party snarkjs ceremony over the shape's exported constraint system
//!   ([`export_r1cs`]), its final `.zkey` installed by [`KeyCache::import`] once checked
//!   against the shape. With [`KeyMode::Ceremony`] a node proves with nothing else.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zkfabric_circuits::{
    aggregate::{
        Aggregand, AggregateCircuit, AggregateShape, FilterShape, Grouping, Selection, TimeBucket,
    },
    circom::{r1cs, zkey::Zkey},
    combine::{CombineCircuit, CombineOutput, CombineShape},
    commitment::{ChunkLayout, ColumnSpec},
    eligibility::{EligibilityCircuit, EligibilityShape, WithdrawalCircuit, WithdrawalShape},
    evaluation::GroupDomain,
    snark::{self, Circuit, ConstraintMatrices, ProvingKey, Reduction},
    CircuitError,
};

use crate::verifier::files::{self, FileError};

/// Why a key could not be loaded, made, imported or exported.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No key for the shape, and setup was not allowed.
    #[error("no proving key for {shape}; run `zkfabric setup` first")]
    Missing { shape: String },
    /// The node takes ceremony keys only, and the shape has none.
    #[error("keys.mode is \"ceremony\" and {shape} has no ceremony key (development keys are refused): export it with `zkfabric keys export-r1cs --shape '{shape}' --out FILE.r1cs`, run the ceremony, and install its key with `zkfabric keys import FILE.zkey --shape '{shape}'`")]
    NoCeremonyKey { shape: String },
    /// Reading or writing the key file failed.
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing the key file failed.
    #[error(transparent)]
    Write(#[from] FileError),
    /// The key file holds another key than the one the node published.
    #[error("{path} holds a key with fingerprint {found}, not the published {published}; remove it and its .vk file and run `zkfabric setup` (or `zkfabric keys import`) again", path = path.display())]
    Changed {
        path: PathBuf,
        published: String,
        found: String,
    },
    /// A shape description that no circuit has.
    #[error("shape {description:?}: {reason}")]
    Shape { description: String, reason: String },
    /// The key file does not hold a key for the shape, or setup failed.
    #[error("key for {shape}: {source}")]
    Circuit {
        shape: String,
        #[source]
        source: CircuitError,
    },
}

/// Which keys a node proves with (`[keys] mode` in the configuration).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyMode {
    /// Ceremony keys where installed, else development keys (made on demand where
    /// allowed).
    #[default]
    Development,
    /// Ceremony keys only: a shape without one is refused, by name.
    Ceremony,
}

/// Where a key came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyOrigin {
    /// A single-party setup on this node.
    #[default]
    Development,
    /// A multi-party ceremony's `.zkey`, imported.
    Ceremony,
}

/// A circuit shape, as its canonical description names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A chunk circuit.
    Aggregate(AggregateShape),
    /// A combine circuit.
    Combine(CombineShape),
    /// The donors' eligibility circuit.
    Eligibility(EligibilityShape),
    /// The donors' withdrawal circuit.
    Withdrawal,
}

impl Shape {
    /// Reads a canonical description back into its shape. Only canonical text is
    /// accepted: the parsed shape must describe itself exactly as `description`.
    pub fn parse(description: &str) -> Result<Self, KeyError> {
        let bad = |reason: String| KeyError::Shape {
            description: description.to_string(),
            reason,
        };
        let mut words = description.split(' ');
        let kind = words.next().unwrap_or_default();
        let fields: HashMap<&str, &str> = words
            .map(|w| {
                w.split_once('=')
                    .ok_or_else(|| bad(format!("{w:?} is not key=value")))
            })
            .collect::<Result<_, _>>()?;
        let field = |name: &str| {
            fields
                .get(name)
                .copied()
                .ok_or_else(|| bad(format!("no {name}=")))
        };
        let number = |text: &str| {
            text.parse::<usize>()
                .map_err(|_| bad(format!("{text:?} is not a number")))
        };
        let shape = match kind {
            "aggregate/v4" => {
                let columns = field("columns")?
                    .split(',')
                    .map(|c| match c.split_at_checked(1) {
                        Some(("n", w)) => Ok(ColumnSpec::narrow(number(w)? as u32)),
                        Some(("w", w)) => Ok(ColumnSpec::wide(number(w)? as u32)),
                        _ => Err(bad(format!("column {c:?} is not n<width> or w<width>"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let layout = ChunkLayout::new(
                    columns,
                    number(field("present")?)?,
                    number(field("rows")?)?,
                )
                .map_err(|e| bad(e.to_string()))?;
                let filters = match field("filters")? {
                    "" => Vec::new(),
                    list => list
                        .split(',')
                        .map(|f| match f.split(':').collect::<Vec<_>>()[..] {
                            ["range", c] => Ok(FilterShape::Range { column: number(c)? }),
                            ["in", c, len] => Ok(FilterShape::In {
                                column: number(c)?,
                                len: number(len)?,
                            }),
                            ["ranges", c, count] => Ok(FilterShape::Ranges {
                                column: number(c)?,
                                count: number(count)?,
                            }),
                            _ => Err(bad(format!("filter {f:?}"))),
                        })
                        .collect::<Result<_, _>>()?,
                };
                let columns = |list: &str| list.split('+').map(number).collect::<Result<_, _>>();
                let aggregand = match field("aggregand")?.split_once(':') {
                    None if field("aggregand")? == "count" => Aggregand::CountOnly,
                    Some(("sum", c)) => Aggregand::Sum {
                        columns: columns(c)?,
                    },
                    Some(("count_where", c)) => Aggregand::CountWhere { column: number(c)? },
                    Some(("clipped_sum", c)) => Aggregand::ClippedSum {
                        columns: columns(c)?,
                    },
                    _ => return Err(bad("aggregand".into())),
                };
                let selection = match field("consent")?.split_once(':') {
                    None if field("consent")? == "none" => Selection::Present,
                    None => Selection::Purpose {
                        consent: number(field("consent")?)?,
                    },
                    Some(("by_purpose", c)) => Selection::ByPurpose { consent: number(c)? },
                    _ => return Err(bad("consent".into())),
                };
                let shape = AggregateShape {
                    layout,
                    selection,
                    filters,
                    group_by: match field("group_by")? {
                        "none" => Vec::new(),
                        list => list
                            .split('+')
                            .map(|g| match g.split(':').collect::<Vec<_>>()[..] {
                                [c] => Ok(Grouping::Column(number(c)?)),
                                ["bucket", c, seconds, width] => Ok(Grouping::Bucket(TimeBucket {
                                    column: number(c)?,
                                    seconds: number(seconds)? as u64,
                                    width: number(width)? as u32,
                                })),
                                _ => Err(bad(format!("group_by {g:?}"))),
                            })
                            .collect::<Result<_, _>>()?,
                    },
                    aggregand,
                    weight: fields.get("weight").map(|w| number(w)).transpose()?,
                };
                shape.validate().map_err(|e| bad(e.to_string()))?;
                Shape::Aggregate(shape)
            }
            "combine/v4" => {
                let inputs = number(field("inputs")?)?;
                let output = match field("output")? {
                    "subtotal" => None,
                    "release" => Some(CombineOutput::Release),
                    "predicate" => Some(CombineOutput::Predicate),
                    "noisy" => Some(CombineOutput::Noisy {
                        coins: number(field("coins")?)? as u32,
                    }),
                    other => return Err(bad(format!("output {other:?}"))),
                };
                let shape = match output {
                    None => CombineShape::subtotal(inputs),
                    Some(output) => CombineShape {
                        inputs,
                        domain: GroupDomain::parse(field("groups")?).map_err(bad)?,
                        sums: number(field("sums")?)?,
                        output,
                    },
                };
                shape.validate().map_err(|e| bad(e.to_string()))?;
                Shape::Combine(shape)
            }
            "eligibility/v3" => Shape::Eligibility(
                EligibilityShape::parse(description)
                    .ok_or_else(|| bad("not an eligibility/v3 shape".into()))?,
            ),
            WithdrawalShape::DESCRIPTION => Shape::Withdrawal,
            other => {
                return Err(bad(format!(
                    "{other:?} is not a circuit (aggregate/v4, combine/v4, eligibility/v3, withdrawal/v1)"
                )))
            }
        };
        if shape.description() != description {
            return Err(bad(format!(
                "not in canonical form; did you mean {:?}?",
                shape.description()
            )));
        }
        Ok(shape)
    }

    /// The canonical description.
    pub fn description(&self) -> String {
        match self {
            Shape::Aggregate(s) => s.description(),
            Shape::Combine(s) => s.description(),
            Shape::Eligibility(s) => s.description(),
            Shape::Withdrawal => WithdrawalShape::DESCRIPTION.to_string(),
        }
    }

    /// The shape's constraint system, as keys for it are made.
    pub fn matrices(&self) -> Result<ConstraintMatrices, CircuitError> {
        match self {
            Shape::Aggregate(s) => ConstraintMatrices::of(AggregateCircuit::blank(s)?),
            Shape::Combine(s) => ConstraintMatrices::of(CombineCircuit::blank(s)?),
            Shape::Eligibility(s) => ConstraintMatrices::of(EligibilityCircuit::blank(s)?),
            Shape::Withdrawal => {
                ConstraintMatrices::of(WithdrawalCircuit::blank(&WithdrawalShape)?)
            }
        }
    }

    /// A ceremony's key as this shape's proving key, once checked against it.
    fn proving_key(&self, zkey: Zkey) -> Result<ProvingKey, CircuitError> {
        match self {
            Shape::Aggregate(s) => zkey.into_proving_key::<AggregateCircuit>(s),
            Shape::Combine(s) => zkey.into_proving_key::<CombineCircuit>(s),
            Shape::Eligibility(s) => zkey.into_proving_key::<EligibilityCircuit>(s),
            Shape::Withdrawal => zkey.into_proving_key::<WithdrawalCircuit>(&WithdrawalShape),
        }
    }
}

/// Writes the constraint system of the shape `description` names to `out` as an iden3
/// `.r1cs` file (written whole or not at all), the input of a ceremony's phase 2. Returns
/// the shape's matrices.
pub fn export_r1cs(description: &str, out: &Path) -> Result<ConstraintMatrices, KeyError> {
    let shape = Shape::parse(description)?;
    let matrices = shape.matrices().map_err(|source| KeyError::Circuit {
        shape: description.to_string(),
        source,
    })?;
    files::write_atomically(out, |file| {
        use std::io::Write;
        let mut buffered = std::io::BufWriter::new(file);
        r1cs::write(&matrices, &mut buffered)
            .and_then(|()| buffered.flush())
            .map_err(|e| FileError::at(out, e))
    })?;
    Ok(matrices)
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
    /// Where the key came from (files written before ceremony keys say nothing: they are
    /// development keys).
    #[serde(default)]
    pub origin: KeyOrigin,
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
            origin: match key.reduction() {
                Reduction::Libsnark => KeyOrigin::Development,
                Reduction::Circom => KeyOrigin::Ceremony,
            },
            constraints: key.matrices().num_constraints as u64,
            verifying_key: hex::encode(snark::verifying_key_to_bytes(key.verifying_key())),
        }
    }
}

/// Proving keys under a data directory, kept in memory once loaded: a long-running node
/// loads each key once.
pub struct KeyCache {
    dir: PathBuf,
    mode: KeyMode,
    loaded: Mutex<HashMap<String, Arc<ProvingKey>>>,
}

impl KeyCache {
    /// The cache under `data_dir/keys`, in development mode.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("keys"),
            mode: KeyMode::Development,
            loaded: Mutex::default(),
        }
    }

    /// The same cache, proving only with the keys `mode` allows.
    pub fn with_mode(self, mode: KeyMode) -> Self {
        Self { mode, ..self }
    }

    /// The keys this cache proves with.
    pub fn mode(&self) -> KeyMode {
        self.mode
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

    /// Whether a key for the shape `description` is at hand: loaded, on disk, or (in
    /// development mode, when `setup` allows it) to be made by a single-party setup.
    pub fn can_provide(&self, description: &str, setup: bool) -> bool {
        self.loaded
            .lock()
            .expect("not poisoned")
            .contains_key(description)
            || self.path(description, "pk").exists()
            || (setup && self.mode == KeyMode::Development)
    }

    /// The key for `shape`: from memory, else from disk; with `setup`, one is made (and
    /// cached) when missing, after calling `on_setup` so the caller can warn that it is a
    /// development key. In [`KeyMode::Ceremony`], only an imported ceremony key is
    /// returned and none is ever made.
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
            if self.mode == KeyMode::Ceremony && key.reduction() != Reduction::Circom {
                return Err(KeyError::NoCeremonyKey {
                    shape: description.to_string(),
                });
            }
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
        } else if self.mode == KeyMode::Ceremony {
            return Err(KeyError::NoCeremonyKey {
                shape: description.to_string(),
            });
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

impl KeyCache {
    /// Installs a ceremony's final `.zkey` as the key of the shape `description` names,
    /// after checking that it was made for exactly that shape's constraint system. It
    /// replaces any development key of the shape. Returns what the node now publishes.
    pub fn import(&self, description: &str, zkey: &[u8]) -> Result<KeyInfo, KeyError> {
        let shape = Shape::parse(description)?;
        let key = Zkey::read(zkey)
            .map_err(CircuitError::from)
            .and_then(|zkey| shape.proving_key(zkey))
            .map_err(|source| KeyError::Circuit {
                shape: description.to_string(),
                source,
            })?;
        fs::create_dir_all(&self.dir).map_err(|source| KeyError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let info = KeyInfo::of(description, &key);
        // The key first: a crash before its .vk is rewritten leaves a key that does not
        // load (named, with the remedy), never a published key the node does not hold.
        write(&self.path(description, "pk"), &key.to_bytes())?;
        write(
            &self.path(description, "vk"),
            serde_json::to_string_pretty(&info)
                .expect("serializable")
                .as_bytes(),
        )?;
        self.loaded
            .lock()
            .expect("not poisoned")
            .insert(description.to_string(), Arc::new(key));
        Ok(info)
    }

    /// In [`KeyMode::Ceremony`], refuses a node that holds development keys, naming their
    /// shapes: they would be published beside the ceremony's.
    pub fn check_mode(&self) -> Result<(), KeyError> {
        if self.mode != KeyMode::Ceremony {
            return Ok(());
        }
        match self
            .infos()?
            .into_iter()
            .find(|info| info.origin != KeyOrigin::Ceremony)
        {
            Some(info) => Err(KeyError::NoCeremonyKey { shape: info.shape }),
            None => Ok(()),
        }
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    Ok(files::write_bytes_atomically(path, bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGGREGATE: &str = "aggregate/v4 rows=8 columns=w32,n4,n5,n3,n7,n3,w24,w20,w24,n1 \
        present=9 consent=5 filters=range:2,in:1:4 group_by=1 aggregand=sum:6";

    #[test]
    fn every_canonical_description_parses_back_to_its_shape() {
        for description in [
            AGGREGATE,
            "aggregate/v4 rows=8 columns=w32,n4,n1 present=2 consent=1 filters= group_by=none \
             aggregand=count",
            "combine/v4 inputs=8 groups=none sums=0 output=release",
            "combine/v4 inputs=4 output=subtotal",
            "combine/v4 inputs=8 groups=12/4 sums=1 output=noisy coins=354",
            "combine/v4 inputs=8 groups=12/4x24/5x5/3 sums=2 output=release",
            "aggregate/v4 rows=8 columns=w32,n4,w24,n1 present=3 consent=1 filters= \
             group_by=none aggregand=clipped_sum:2",
            "aggregate/v4 rows=8 columns=w32,n4,n5,n3,n1 present=4 consent=3 \
             filters=ranges:2:3 group_by=1+2 aggregand=sum:0+4",
            "aggregate/v4 rows=8 columns=w32,n4,n5,n3,n1 present=4 consent=3 \
             filters=range:0 group_by=bucket:0:3600:8+1 aggregand=count",
            "eligibility/v3 districts=16 rows=168 bound=age+district",
            "eligibility/v3 districts=16 rows=168 bound=age",
            "eligibility/v3 districts=16 rows=0 bound=none",
            WithdrawalShape::DESCRIPTION,
        ] {
            let shape = Shape::parse(description).unwrap();
            assert_eq!(shape.description(), description);
        }
    }

    #[test]
    fn other_text_is_refused_naming_what_is_wrong() {
        for (text, expected) in [
            ("aggregate/v2 rows=8", "is not a circuit"),
            ("eligibility/v2 districts=16", "is not a circuit"),
            (
                "eligibility/v3 districts=16 rows=168 bound=income",
                "not an eligibility/v3 shape",
            ),
            ("combine/v4 inputs=8 groups=none sums=1", "no output="),
            (
                "combine/v4 inputs=eight groups=none sums=1 output=release",
                "\"eight\" is not a number",
            ),
            (
                "combine/v4 groups=none inputs=8 sums=1 output=release",
                "not in canonical form",
            ),
            (
                "combine/v4 inputs=8 groups=12:4 sums=1 output=release",
                "not codes/width",
            ),
            (
                "combine/v4 inputs=8 groups=17/4 sums=1 output=release",
                "17 codes of 4 bits",
            ),
            (&AGGREGATE.replace("w32", "x32"), "column \"x32\""),
            (
                &AGGREGATE.replace("group_by=1", "group_by=12"),
                "invalid shape",
            ),
            (
                &AGGREGATE.replace("group_by=1", "group_by=bucket:0:0:8"),
                "a time bucket of 0 seconds",
            ),
            (
                &AGGREGATE.replace("group_by=1", "group_by=bucket:0:60"),
                "group_by \"bucket:0:60\"",
            ),
        ] {
            let err = Shape::parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn ceremony_mode_refuses_development_keys_by_shape_and_never_makes_one() {
        let dir = tempfile::tempdir().unwrap();
        let shape = CombineShape {
            inputs: 2,
            domain: GroupDomain::default(),
            sums: 0,
            output: CombineOutput::Release,
        };
        let description = shape.description();
        let ceremony = || KeyCache::new(dir.path()).with_mode(KeyMode::Ceremony);
        let refused = |result: Result<Arc<ProvingKey>, KeyError>| match result {
            Err(e @ KeyError::NoCeremonyKey { .. }) => e.to_string(),
            other => panic!("not refused: {:?}", other.map(|_| ())),
        };
        let message = refused(ceremony().get::<CombineCircuit>(&shape, &description, true, |_| ()));
        assert!(message.contains(&description), "{message}");
        assert!(!ceremony().has(&description), "no development key was made");
        ceremony().check_mode().unwrap();

        // A development key made in development mode is still refused in ceremony mode.
        KeyCache::new(dir.path())
            .get::<CombineCircuit>(&shape, &description, true, |_| ())
            .unwrap();
        refused(ceremony().get::<CombineCircuit>(&shape, &description, true, |_| ()));
        let err = ceremony().check_mode().unwrap_err().to_string();
        assert!(err.contains(&description), "{err}");
        KeyCache::new(dir.path()).check_mode().unwrap();
    }

    #[test]
    fn an_export_is_written_whole_and_a_zkey_for_another_shape_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("root.r1cs");
        let description = "combine/v4 inputs=2 groups=none sums=0 output=release";
        let matrices = export_r1cs(description, &out).unwrap();
        let bytes = fs::read(&out).unwrap();
        assert!(bytes.starts_with(b"r1cs") && matrices.num_constraints > 0);
        assert!(matches!(
            export_r1cs("combine/v4 inputs=2", &dir.path().join("no.r1cs")),
            Err(KeyError::Shape { .. })
        ));
        assert!(!dir.path().join("no.r1cs").exists());

        let keys = KeyCache::new(dir.path());
        let err = keys
            .import(description, b"not a zkey")
            .unwrap_err()
            .to_string();
        assert!(err.contains(description) && err.contains("zkey"), "{err}");
        assert!(!keys.has(description), "nothing installed");
    }
}
