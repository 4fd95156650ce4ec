//! Answer bundles: the protobuf message ([`Bundle`]) a verified query produces, with the
//! conversions between its parts and the node's types, and reading and writing `.zkf`
//! files (protobuf) and their JSON form.

use std::path::Path;

use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use prost::Message;
use zkfabric_proto::v1 as pb;
pub use zkfabric_proto::v1::Bundle;

use crate::{
    files::{self, FileError},
    manifest::{Manifest, SignedManifest},
    query::{
        in_list_slots, Aggregand, Arithmetic, ArithmeticOp, Comparison, Filter, Grouping, Having,
        Limits, OrderKey, Output, OutputKind, PostProcessing, ProvableQuery, Test, TimeBucket,
        MAX_GROUPS, MAX_IN_ITEMS,
    },
};
use zkfabric_circuits::Fr;

/// The bundle format this version writes and reads: 2 since bundles state their privacy
/// mode and dp answers are noisy, 3 since queries group by several columns (result rows
/// carry one label per grouping column), 4 since the aggregation argument is a random
/// evaluation (the totals' commitment), 5 since GROUP BY takes time buckets.
pub const FORMAT: u32 = 5;

/// Most slots (K or L) a bundle's circuits may have: a bound on what a verifier
/// allocates for a bundle it has not checked yet (G is bounded by [`MAX_GROUPS`]).
pub const MAX_SLOTS: usize = 1024;

/// Why a bundle is malformed: the field at fault.
#[derive(Debug, thiserror::Error)]
#[error("bundle field `{field}`: {message}")]
pub struct BundleError {
    /// The field, as a path into the message.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn malformed(field: impl Into<String>, message: impl Into<String>) -> BundleError {
    BundleError {
        field: field.into(),
        message: message.into(),
    }
}

/// A field element as the 32 bytes of its canonical compressed encoding.
pub fn fr_to_bytes(x: &Fr) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    x.serialize_compressed(&mut out)
        .expect("serializing into a Vec cannot fail");
    out
}

/// Reads a field element written by [`fr_to_bytes`], refusing non-canonical encodings.
pub fn fr_from_bytes(bytes: &[u8], field: &str) -> Result<Fr, BundleError> {
    if bytes.len() != 32 {
        return Err(malformed(
            field,
            format!("{} bytes, expected 32", bytes.len()),
        ));
    }
    Fr::deserialize_compressed(bytes).map_err(|e| malformed(field, e.to_string()))
}

/// The signed manifest as the bundle carries it.
pub fn manifest_to_proto(signed: &SignedManifest) -> Result<pb::SignedManifest, BundleError> {
    let bytes = |hex_text: &str, field: &str| {
        hex::decode(hex_text).map_err(|e| malformed(field, e.to_string()))
    };
    Ok(pb::SignedManifest {
        manifest: signed.manifest.canonical_bytes(),
        signature: bytes(&signed.signature, "manifest.signature")?,
        node_key: bytes(&signed.node_key, "manifest.node_key")?,
    })
}

/// The signed manifest of a bundle (its signature is checked by the verifier). Only the
/// canonical bytes the node signs are accepted: no unknown field, no other spacing or
/// order, so the bytes the signature covers are exactly the manifest read, and nothing
/// unread rides along.
pub fn manifest_from_proto(m: Option<&pb::SignedManifest>) -> Result<SignedManifest, BundleError> {
    let m = m.ok_or_else(|| malformed("manifest", "missing"))?;
    let manifest: Manifest = serde_json::from_slice(&m.manifest)
        .map_err(|e| malformed("manifest.manifest", e.to_string()))?;
    if manifest.canonical_bytes() != m.manifest {
        return Err(malformed(
            "manifest.manifest",
            "not the canonical bytes of the manifest it holds",
        ));
    }
    Ok(SignedManifest {
        manifest,
        signature: hex::encode(&m.signature),
        node_key: hex::encode(&m.node_key),
    })
}

/// The provable query and the limits that fix its shapes, as the bundle carries them.
pub fn query_to_proto(q: &ProvableQuery, limits: &Limits) -> pb::ProvableQuery {
    let filters = q
        .filters
        .iter()
        .map(|f| pb::Filter {
            column: f.column.clone(),
            test: Some(match &f.test {
                Test::Range { lo, hi } => pb::filter::Test::Range(pb::Range { lo: *lo, hi: *hi }),
                Test::In(items) => pb::filter::Test::InList(pb::InList {
                    values: items.clone(),
                    slots: in_list_slots(items.len()) as u32,
                }),
                Test::Ranges(ranges) => pb::filter::Test::Ranges(pb::Ranges {
                    ranges: ranges
                        .iter()
                        .map(|&(lo, hi)| pb::Range { lo, hi })
                        .collect(),
                }),
            }),
        })
        .collect();
    let kind = match &q.aggregand {
        Aggregand::CountOnly => pb::aggregand::Kind::CountOnly(pb::CountOnly {}),
        Aggregand::Sum(m) => pb::aggregand::Kind::Sum(pb::Measures { columns: m.clone() }),
        Aggregand::CountWhere {
            column,
            lo,
            hi,
            negate,
        } => pb::aggregand::Kind::CountWhere(pb::CountWhere {
            column: column.clone(),
            range: Some(pb::Range { lo: *lo, hi: *hi }),
            negate: *negate,
        }),
    };
    let outputs = q
        .outputs
        .iter()
        .map(|o| pb::Output {
            name: o.name.clone(),
            kind: Some(match &o.kind {
                OutputKind::GroupKey(column) => pb::output::Kind::GroupKey(pb::GroupKey {
                    column: *column as u32,
                }),
                OutputKind::Count => pb::output::Kind::Count(pb::Empty {}),
                OutputKind::Sum(m) => pb::output::Kind::Sum(pb::Measure { measure: *m as u32 }),
                OutputKind::Avg(m) => pb::output::Kind::Avg(pb::Measure { measure: *m as u32 }),
                OutputKind::Predicate => pb::output::Kind::Predicate(pb::Empty {}),
                OutputKind::Arithmetic(a) => pb::output::Kind::Arithmetic(arithmetic_to_proto(a)),
            }),
        })
        .collect();
    pb::ProvableQuery {
        purpose: q.purpose.clone(),
        filters,
        group_by: q
            .group_by
            .iter()
            .map(|g| pb::Grouping {
                column: g.column.clone(),
                bucket: g.bucket.map(|b| pb::TimeBucket {
                    seconds: b.seconds,
                    offset: b.offset,
                }),
            })
            .collect(),
        aggregand: Some(pb::Aggregand { kind: Some(kind) }),
        min_group_size: limits.min_group_size,
        outputs,
        combine_inputs: limits.combine_inputs as u32,
        having: q
            .post
            .having
            .iter()
            .map(|h| pb::Having {
                output: h.output as u32,
                comparison: h.comparison.symbol().into(),
                value: h.value,
            })
            .collect(),
        order_by: q
            .post
            .order_by
            .iter()
            .map(|k| pb::OrderKey {
                output: k.output as u32,
                descending: k.descending,
                nulls_first: k.nulls_first,
            })
            .collect(),
        limit: q.post.limit,
    }
}

/// The provable query of a bundle, with the limits its shapes were made under (a
/// bundle's group slots are the grouping column's codes, so any number of them is
/// accepted here).
pub fn query_from_proto(
    q: Option<&pb::ProvableQuery>,
) -> Result<(ProvableQuery, Limits), BundleError> {
    let q = q.ok_or_else(|| malformed("query", "missing"))?;
    for (i, f) in q.filters.iter().enumerate() {
        if let Some(pb::filter::Test::InList(l)) = &f.test {
            if l.values.len() > MAX_IN_ITEMS || l.slots as usize != in_list_slots(l.values.len()) {
                return Err(malformed(
                    format!("query.filters[{i}].in_list"),
                    format!(
                        "{} values in {} slots: a list has 1 to {MAX_IN_ITEMS} values, in the \
                         next power of two of slots",
                        l.values.len(),
                        l.slots
                    ),
                ));
            }
        }
    }
    let filters = q
        .filters
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let test = match &f.test {
                Some(pb::filter::Test::Range(r)) => Test::Range { lo: r.lo, hi: r.hi },
                Some(pb::filter::Test::InList(l)) => Test::In(l.values.clone()),
                Some(pb::filter::Test::Ranges(r)) => {
                    Test::Ranges(r.ranges.iter().map(|r| (r.lo, r.hi)).collect())
                }
                None => return Err(malformed(format!("query.filters[{i}].test"), "missing")),
            };
            Ok(Filter {
                column: f.column.clone(),
                test,
            })
        })
        .collect::<Result<_, _>>()?;
    let aggregand = match q.aggregand.as_ref().and_then(|a| a.kind.as_ref()) {
        Some(pb::aggregand::Kind::CountOnly(_)) => Aggregand::CountOnly,
        Some(pb::aggregand::Kind::Sum(m)) => Aggregand::Sum(m.columns.clone()),
        Some(pb::aggregand::Kind::CountWhere(c)) => {
            let r = c
                .range
                .as_ref()
                .ok_or_else(|| malformed("query.aggregand.count_where.range", "missing"))?;
            Aggregand::CountWhere {
                column: c.column.clone(),
                lo: r.lo,
                hi: r.hi,
                negate: c.negate,
            }
        }
        None => return Err(malformed("query.aggregand", "missing")),
    };
    let outputs: Vec<Output> = q
        .outputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let kind = match &o.kind {
                Some(pb::output::Kind::GroupKey(g)) => OutputKind::GroupKey(g.column as usize),
                Some(pb::output::Kind::Count(_)) => OutputKind::Count,
                Some(pb::output::Kind::Sum(m)) => OutputKind::Sum(m.measure as usize),
                Some(pb::output::Kind::Avg(m)) => OutputKind::Avg(m.measure as usize),
                Some(pb::output::Kind::Predicate(_)) => OutputKind::Predicate,
                Some(pb::output::Kind::Arithmetic(a)) => OutputKind::Arithmetic(
                    arithmetic_from_proto(a, &format!("query.outputs[{i}].arithmetic"))?,
                ),
                None => return Err(malformed(format!("query.outputs[{i}].kind"), "missing")),
            };
            Ok(Output {
                name: o.name.clone(),
                kind,
            })
        })
        .collect::<Result<_, _>>()?;
    let output = |i: usize, field: &str, output: u32| {
        let output = output as usize;
        match outputs.get(output) {
            Some(_) => Ok(output),
            None => Err(malformed(
                format!("query.{field}[{i}].output"),
                format!("there is no output {output}"),
            )),
        }
    };
    let having = q
        .having
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let comparison = Comparison::ALL
                .iter()
                .find(|(_, symbol)| *symbol == h.comparison)
                .ok_or_else(|| {
                    malformed(
                        format!("query.having[{i}].comparison"),
                        format!("{:?} is not a comparison", h.comparison),
                    )
                })?
                .0;
            Ok(Having {
                output: output(i, "having", h.output)?,
                comparison,
                value: h.value,
            })
        })
        .collect::<Result<_, BundleError>>()?;
    let order_by = q
        .order_by
        .iter()
        .enumerate()
        .map(|(i, k)| {
            Ok(OrderKey {
                output: output(i, "order_by", k.output)?,
                descending: k.descending,
                nulls_first: k.nulls_first,
            })
        })
        .collect::<Result<_, BundleError>>()?;
    let query = ProvableQuery {
        purpose: q.purpose.clone(),
        filters,
        group_by: q
            .group_by
            .iter()
            .map(|g| Grouping {
                column: g.column.clone(),
                bucket: g.bucket.map(|b| TimeBucket::new(b.seconds, b.offset)),
            })
            .collect(),
        aggregand,
        outputs,
        post: PostProcessing {
            having,
            order_by,
            limit: q.limit,
        },
    };
    let limits = Limits {
        in_list: MAX_IN_ITEMS,
        max_groups: MAX_GROUPS,
        combine_inputs: q.combine_inputs as usize,
        min_group_size: q.min_group_size,
    };
    if !(2..=MAX_SLOTS).contains(&limits.combine_inputs) {
        return Err(malformed(
            "query.combine_inputs",
            format!("a combine opens 2 to {MAX_SLOTS} partials"),
        ));
    }
    if limits.min_group_size == 0 {
        return Err(malformed(
            "query.min_group_size",
            "k is at least 1: a bundle with k = 0 could release empty groups",
        ));
    }
    Ok((query, limits))
}

/// Writes `bundle` to `path` as protobuf, atomically; with `json`, also writes
/// `path.json` in protobuf's canonical JSON mapping.
pub fn write(bundle: &Bundle, path: &Path, json: bool) -> Result<(), FileError> {
    let bytes = bundle.encode_to_vec();
    files::write_bytes_atomically(path, &bytes)?;
    if json {
        let json_path = path.with_extension("zkf.json");
        let text = serde_json::to_vec_pretty(bundle).expect("a bundle always serializes");
        files::write_bytes_atomically(&json_path, &text)?;
    }
    Ok(())
}

/// Reads a bundle from a `.zkf` file (protobuf) or its `.json` form.
pub fn read(path: &Path) -> Result<Bundle, BundleError> {
    let bytes =
        std::fs::read(path).map_err(|e| malformed(path.display().to_string(), e.to_string()))?;
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_slice(&bytes)
            .map_err(|e| malformed(path.display().to_string(), e.to_string()))
    } else {
        Bundle::decode(&bytes[..]).map_err(|e| malformed(path.display().to_string(), e.to_string()))
    }
}

/// The protobuf form of an [`Arithmetic`].
fn arithmetic_to_proto(a: &Arithmetic) -> pb::Arithmetic {
    use pb::arithmetic::Node;
    let node = match a {
        Arithmetic::Aggregate(kind) => match **kind {
            OutputKind::Sum(m) => Node::Sum(pb::Measure { measure: m as u32 }),
            OutputKind::Avg(m) => Node::Avg(pb::Measure { measure: m as u32 }),
            // Only COUNT, SUM and AVG are lowered into arithmetic.
            _ => Node::Count(pb::Empty {}),
        },
        Arithmetic::Literal(v) => Node::Literal(*v),
        Arithmetic::Binary { op, left, right } => Node::Binary(Box::new(pb::BinaryArithmetic {
            op: op.symbol().to_string(),
            left: Some(Box::new(arithmetic_to_proto(left))),
            right: Some(Box::new(arithmetic_to_proto(right))),
        })),
    };
    pb::Arithmetic { node: Some(node) }
}

/// An [`Arithmetic`] from its protobuf form at `field`.
fn arithmetic_from_proto(a: &pb::Arithmetic, field: &str) -> Result<Arithmetic, BundleError> {
    use pb::arithmetic::Node;
    let aggregate = |kind| Ok(Arithmetic::Aggregate(Box::new(kind)));
    match &a.node {
        Some(Node::Count(_)) => aggregate(OutputKind::Count),
        Some(Node::Sum(m)) => aggregate(OutputKind::Sum(m.measure as usize)),
        Some(Node::Avg(m)) => aggregate(OutputKind::Avg(m.measure as usize)),
        Some(Node::Literal(v)) => Ok(Arithmetic::Literal(*v)),
        Some(Node::Binary(b)) => {
            let op = ArithmeticOp::ALL
                .into_iter()
                .find(|op| op.symbol() == b.op)
                .ok_or_else(|| {
                    malformed(format!("{field}.op"), format!("{:?} is no operator", b.op))
                })?;
            let side = |side: &Option<Box<pb::Arithmetic>>, name: &str| {
                let field = format!("{field}.{name}");
                match side {
                    Some(a) => arithmetic_from_proto(a, &field).map(Box::new),
                    None => Err(malformed(field, "missing")),
                }
            };
            Ok(Arithmetic::Binary {
                op,
                left: side(&b.left, "left")?,
                right: side(&b.right, "right")?,
            })
        }
        None => Err(malformed(field.to_string(), "missing")),
    }
}
