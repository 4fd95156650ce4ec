//! Proves and verifies a filtered GROUP BY aggregate over a generated chunk:
//!
//! ```text
//! SELECT district, SUM(kwh), COUNT(*) FROM consumption
//! WHERE district IN ('Daan', 'Xinyi', 'Wanhua', 'Zhongshan') AND hour BETWEEN 7 AND 9
//! GROUP BY district            -- purpose: energy-research, minimum group size 10
//! ```
//!
//! Two chunks of household readings are sealed (committed with fresh salts). The node
//! commits to the per-district totals, draws the challenge `r` from that commitment, the
//! query and the chunk commitments, and proves each chunk's hidden share of the totals'
//! evaluation at `r`; a combine proof opens the shares and the totals, checks that the
//! totals evaluate to the shares' sum, and releases them, suppressing districts with fewer
//! than 10 readings. The verifier recomputes `r` and checks all three proofs against the
//! public chunk commitments and the released answer only.
//!
//! Run: `cargo run --release --example aggregate [-- --rows-per-chunk 512]`

use std::time::Instant;

use rand::{rngs::OsRng, Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use zkfabric::circuits::{
    aggregate::{
        self, Aggregand, AggregateCircuit, AggregateInstance, AggregateQuery, AggregateShape,
        ChunkId, FilterParams, FilterShape, Grouping, Partial, Selection,
    },
    combine::{
        challenge, Closing, CombineCircuit, CombineInstance, CombineOutput, CombineParams,
        CombineResult, CombineShape, GroupRelease, Opening, TotalsClaim,
    },
    commitment::{Chunk, ChunkLayout, ColumnSpec},
    evaluation::{add_tallies, GroupColumn, GroupDomain, Tallies},
    snark, Fr,
};

const DISTRICTS: [&str; 8] = [
    "Daan",
    "Xinyi",
    "Wanhua",
    "Zhongshan",
    "Songshan",
    "Beitou",
    "Shilin",
    "Neihu",
];
const CONSENT_PURPOSES: [&str; 3] = ["public-health", "urban-planning", "energy-research"];
/// Column indices of the generated consumption chunk.
const TIME: usize = 0;
const DISTRICT: usize = 1;
const HOUR: usize = 2;
const HOUSEHOLD: usize = 3;
const AGE: usize = 4;
const CONSENT: usize = 5;
const PRESENT: usize = 6;
const KWH: usize = 7;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows_per_chunk = parse_rows()?;
    let layout = consumption_layout(rows_per_chunk)?;
    let mut data_rng = ChaCha20Rng::seed_from_u64(2026);
    let mut rng = OsRng;

    // The query as the circuits see it.
    let selected: Vec<u64> = (0..4).collect();
    let purpose = 2; // energy-research
    let shape = AggregateShape {
        layout: layout.clone(),
        selection: Selection::Purpose { consent: CONSENT },
        filters: vec![
            FilterShape::In {
                column: DISTRICT,
                len: 4,
            },
            FilterShape::Range { column: HOUR },
        ],
        group_by: vec![Grouping::Column(DISTRICT)],
        aggregand: Aggregand::Sum { columns: vec![KWH] },
        weight: None,
    };
    let query = AggregateQuery {
        purpose,
        filters: vec![
            FilterParams::In(selected.clone()),
            FilterParams::Range { lo: 7, hi: 9 },
        ],
        condition: None,
        clips: Vec::new(),
        origins: Vec::new(),
    };
    // The group slots: districts 0..4, the ones the filter selects.
    let combine_shape = CombineShape {
        inputs: 2,
        domain: GroupDomain {
            columns: vec![GroupColumn {
                width: layout.width(DISTRICT),
                codes: selected.len() as u64,
            }],
        },
        sums: 1,
        output: CombineOutput::Release,
    };
    let params = CombineParams {
        min_group_size: 10,
        threshold: 0,
        noise: None,
    };

    println!("zkfabric: verified aggregate over 2 chunks of {rows_per_chunk} generated household readings");
    println!("development keys from a single-party setup (production keys come from a ceremony)");
    let t = Instant::now();
    let chunk_pk = snark::setup::<AggregateCircuit, _>(&shape, &mut rng)?;
    let combine_pk = snark::setup::<CombineCircuit, _>(&combine_shape, &mut rng)?;
    println!(
        "setup           {:>8.2?}  chunk circuit: {} constraints ({:.1} per row)",
        t.elapsed(),
        chunk_pk.matrices().num_constraints,
        chunk_pk.matrices().num_constraints as f64 / rows_per_chunk as f64
    );

    // Seal two chunks: these commitments are what a node publishes in its manifest.
    let chunks: Vec<Chunk> = (0..2)
        .map(|i| {
            Chunk::seal(
                &layout,
                1,
                i,
                generate_readings(rows_per_chunk, &mut data_rng),
                &mut rng,
            )
        })
        .collect::<Result<_, _>>()?;
    // (commitment, dataset id, index, present rows) of each chunk, as a manifest lists them.
    let published: Vec<(Fr, ChunkId)> = chunks
        .iter()
        .map(|c| (c.commitment(&layout), c.id(&layout)))
        .collect();

    // The node: the totals (committed), the challenge drawn after them, one chunk proof per
    // chunk, then the combine proof.
    let t = Instant::now();
    let mut tallies = Tallies::new();
    for chunk in &chunks {
        add_tallies(&mut tallies, &aggregate::evaluate(&shape, &query, chunk)?);
    }
    let totals = Partial::from_tallies(&combine_shape.domain, 1, &tallies)
        .map_err(|key| format!("group key {key} outside the group slots"))?;
    let totals_blind = Fr::from(rng.gen::<u128>());
    let commitments: Vec<Fr> = published.iter().map(|(c, _)| *c).collect();
    let r = challenge(
        &shape,
        &query,
        &combine_shape,
        totals.commit(totals_blind),
        &commitments,
    );
    let mut proofs = Vec::new();
    let mut openings = Vec::new();
    for chunk in chunks {
        let blind = Fr::from(rng.gen::<u128>());
        let circuit = AggregateCircuit::new(shape.clone(), query.clone(), chunk, r, blind)?;
        openings.push(Opening {
            evaluation: circuit.share,
            blind,
        });
        proofs.push(snark::prove(&chunk_pk, circuit, &mut rng)?);
    }
    let chunk_time = t.elapsed();
    let t = Instant::now();
    let combine = CombineCircuit::new(
        combine_shape.clone(),
        params.clone(),
        openings,
        Closing::Root {
            totals,
            blind: totals_blind,
            challenge: r,
        },
    )?;
    let answer = combine.instance.clone();
    let combine_proof = snark::prove(&combine_pk, combine, &mut rng)?;
    println!(
        "prove           {:>8.2?}  2 chunk proofs ({:.0} rows/s), combine {:.2?}",
        chunk_time,
        2.0 * rows_per_chunk as f64 / chunk_time.as_secs_f64(),
        t.elapsed()
    );

    // The verifier: recomputes the challenge and every public input from the manifest
    // commitments, the query and the released answer, and links each chunk proof's
    // evaluation commitment to the combine proof's inputs.
    let t = Instant::now();
    let claim = answer
        .totals
        .ok_or("the root states the totals' commitment")?;
    let r = challenge(
        &shape,
        &query,
        &combine_shape,
        claim.commitment,
        &commitments,
    );
    let root = CombineInstance {
        totals: Some(TotalsClaim {
            challenge: r,
            commitment: claim.commitment,
        }),
        ..answer.clone()
    };
    let chunk_statements: Vec<(Vec<Fr>, snark::Proof)> = proofs
        .into_iter()
        .enumerate()
        .map(|(i, proof)| {
            let instance = AggregateInstance {
                chunk_commitment: published[i].0,
                chunk: published[i].1,
                query: query.clone(),
                challenge: r,
                evaluation_commitment: answer.input_commitments[i],
            };
            Ok((instance.public_inputs(&shape)?, proof))
        })
        .collect::<Result<_, zkfabric::circuits::CircuitError>>()?;
    let mut ok = snark::batch_verify(chunk_pk.verifying_key(), &chunk_statements, &mut rng)?;
    ok &= snark::verify(
        combine_pk.verifying_key(),
        &root.public_inputs(&combine_shape)?,
        &combine_proof,
    )?;
    println!(
        "verify          {:>8.2?}  3 proofs of {} bytes each, chunk key {}",
        t.elapsed(),
        snark::proof_to_bytes(&combine_proof).len(),
        &snark::fingerprint(chunk_pk.verifying_key())[..19]
    );

    println!(
        "\npurpose {}, hours 7-9, minimum group size {}",
        CONSENT_PURPOSES[purpose as usize], params.min_group_size
    );
    println!("{:<12} {:>8} {:>14}", "district", "readings", "kWh");
    if let CombineResult::Release { groups, .. } = &answer.result {
        for (key, group) in selected.iter().zip(groups) {
            match group {
                GroupRelease::Released { count, sums } => {
                    println!(
                        "{:<12} {count:>8} {:>14.3}",
                        DISTRICTS[*key as usize],
                        sums[0] as f64 / 1000.0
                    )
                }
                GroupRelease::Suppressed => println!(
                    "{:<12} {:>8} {:>14}",
                    DISTRICTS[*key as usize], "suppressed", "-"
                ),
            }
        }
    }
    if ok {
        println!("\nverified: every proof holds against the chunk commitments");
        Ok(())
    } else {
        Err("verification failed".into())
    }
}

fn parse_rows() -> Result<usize, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(512),
        [flag, n] if flag == "--rows-per-chunk" => n
            .parse::<usize>()
            .ok()
            .filter(|n| n.is_power_of_two())
            .ok_or_else(|| format!("--rows-per-chunk takes a power of two, got {n:?}")),
        _ => Err("usage: aggregate [--rows-per-chunk N]".into()),
    }
}

/// time, district (3 bits), hour (5), household-size band (3), age (7), consent (3),
/// present (1), kWh x 1000 (24 bits).
fn consumption_layout(capacity: usize) -> Result<ChunkLayout, Box<dyn std::error::Error>> {
    let columns = vec![
        ColumnSpec::wide(32),
        ColumnSpec::narrow(3),
        ColumnSpec::narrow(5),
        ColumnSpec::narrow(3),
        ColumnSpec::narrow(7),
        ColumnSpec::narrow(3),
        ColumnSpec::narrow(1),
        ColumnSpec::wide(24),
    ];
    Ok(ChunkLayout::new(columns, PRESENT, capacity)?)
}

/// Hourly household readings with a diurnal load curve: a morning and an evening peak,
/// scaled by household size.
fn generate_readings(rows: usize, rng: &mut ChaCha20Rng) -> Vec<Vec<u64>> {
    let mut columns: Vec<Vec<u64>> = (0..8).map(|_| Vec::with_capacity(rows)).collect();
    for i in 0..rows {
        let hour = rng.gen_range(0..24u64);
        let household = rng.gen_range(0..5u64);
        let peak = match hour {
            7..=9 => 1.6,
            18..=22 => 2.1,
            0..=5 => 0.5,
            _ => 1.0,
        };
        let kwh = (0.25 + 0.18 * household as f64) * peak * rng.gen_range(0.6..1.4);
        let consent = if rng.gen_bool(0.8) { 0b100 } else { 0 } | rng.gen_range(0..4u64);
        for (c, v) in [
            (TIME, 1_767_225_600 + 3600 * i as u64),
            (DISTRICT, rng.gen_range(0..DISTRICTS.len() as u64)),
            (HOUR, hour),
            (HOUSEHOLD, household),
            (AGE, rng.gen_range(18..95u64)),
            (CONSENT, consent),
            (PRESENT, 1),
            (KWH, (kwh * 1000.0) as u64),
        ] {
            columns[c].push(v);
        }
    }
    columns
}
