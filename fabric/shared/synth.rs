//! Deterministic synthetic data for the built-in datasets, with shapes a researcher would
//! recognise:
//! - `consumption`: households in districts, a week of hourly readings each; electricity
//!   follows a diurnal load curve (morning and evening peaks, flatter weekends) scaled by
//!   household size, water peaks at washing times, retail spending comes in purchases;
//! - `movement`: trips between zones from a gravity model (population at the origin,
//!   jobs at the destination, decaying with distance), commuter peaks, and mode shares
//!   that follow distance;
//! - `signal`: devices seen per zone and hour, business zones full by day and
//!   residential zones by night, quieter at weekends.
//!
//! The output is column-major: one `Vec<u64>` per declared column, stored codes.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::verifier::schema::Schema;

/// 2026-01-05 00:00 UTC, a Monday: generated time series start here.
pub const START: u64 = 1_767_571_200;
const HOUR: u64 = 3600;
/// Seed offset of the privacy units' pseudonyms.
const UNIT_STREAM: u64 = 0x756e_6974;
/// Trips one generated traveller makes (the movement schema allows 14).
const TRIPS_PER_TRAVELLER: usize = 10;

/// Per zone (the twelve districts of the built-in schemas): position in km, residents
/// and jobs in thousands.
const ZONES: [(f64, f64, f64, f64); 12] = [
    (0.0, 0.0, 160.0, 420.0),   // Zhongzheng: government and offices
    (-0.8, 1.9, 125.0, 150.0),  // Datong
    (1.6, 2.4, 230.0, 380.0),   // Zhongshan
    (4.2, 2.2, 205.0, 260.0),   // Songshan
    (2.4, -1.2, 310.0, 400.0),  // Daan
    (-1.6, -0.6, 185.0, 110.0), // Wanhua
    (5.3, -0.4, 225.0, 450.0),  // Xinyi: business district
    (1.5, 7.5, 290.0, 120.0),   // Shilin
    (0.5, 12.0, 255.0, 80.0),   // Beitou
    (7.8, 4.6, 285.0, 330.0),   // Neihu: technology park
    (9.6, 0.8, 120.0, 110.0),   // Nangang
    (4.2, -5.6, 275.0, 90.0),   // Wenshan
];

/// Generates `rows` rows of built-in dataset `schema` from `seed`, calling `progress`
/// with the number of rows made so far every few thousand rows.
pub fn generate(
    schema: &Schema,
    rows: usize,
    seed: u64,
    mut progress: impl FnMut(usize),
) -> Result<Vec<Vec<u64>>, String> {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    // Units' pseudonyms come from a stream of their own, so that they leave the values
    // of every other column as they were.
    let mut units = ChaCha12Rng::seed_from_u64(seed ^ UNIT_STREAM);
    let mut out = vec![Vec::with_capacity(rows); schema.declared().len()];
    let index = |name: &str| {
        schema
            .column(name)
            .map(|(i, _)| i)
            .ok_or_else(|| format!("dataset {} has no column `{name}`", schema.name))
    };
    let mut push = |values: &[(usize, u64)]| {
        for &(c, v) in values {
            out[c].push(v);
        }
    };
    match schema.name.as_str() {
        "consumption" => {
            let [time, district, hour, size, age, consent, kwh, water, spend] = [
                "time",
                "district",
                "hour",
                "household_size",
                "age",
                "consent",
                "kwh",
                "water",
                "spend",
            ]
            .map(index);
            let [time, district, hour, size, age, consent, kwh, water, spend] = [
                time?, district?, hour?, size?, age?, consent?, kwh?, water?, spend?,
            ];
            let unit = index("household")?;
            let hours_per_household = 24 * 7;
            let mut household = Household::new(&mut rng);
            let mut pseudonym = units.gen::<u64>();
            for row in 0..rows {
                let offset = (row % hours_per_household) as u64;
                if row > 0 && offset == 0 {
                    household = Household::new(&mut rng);
                    pseudonym = units.gen();
                }
                let t = START + offset * HOUR;
                let h = offset % 24;
                let weekend = offset / 24 >= 5;
                let people = household.size as f64 + 1.0;
                let load =
                    diurnal_load(h, weekend) * (0.12 + 0.11 * people) * rng.gen_range(0.7..1.3);
                let litres = washing_curve(h) * 9.0 * people * rng.gen_range(0.5..1.5);
                let cents = if rng.gen_bool(shopping_chance(h, weekend)) {
                    rng.gen_range(300..9_000)
                } else {
                    0
                };
                push(&[
                    (time, t),
                    (district, household.district),
                    (hour, h),
                    (size, household.size),
                    (age, household.age),
                    (consent, household.consent),
                    (kwh, (load * 1000.0).round() as u64),
                    (water, litres.round() as u64),
                    (spend, cents),
                    (unit, pseudonym),
                ]);
                if row % 4096 == 0 {
                    progress(row);
                }
            }
        }
        "movement" => {
            let [time, origin, destination, mode, hour, age, consent, duration, distance] = [
                "time",
                "origin",
                "destination",
                "mode",
                "hour",
                "age",
                "consent",
                "duration",
                "distance",
            ]
            .map(index);
            let [time, origin, destination, mode, hour, age, consent, duration, distance] = [
                time?,
                origin?,
                destination?,
                mode?,
                hour?,
                age?,
                consent?,
                duration?,
                distance?,
            ];
            let unit = index("traveller")?;
            let residents: Vec<f64> = ZONES.iter().map(|z| z.2).collect();
            // A traveller makes ten trips in the week, at one age.
            let (mut traveller, mut traveller_age) = (0, 0);
            for row in 0..rows {
                if row % TRIPS_PER_TRAVELLER == 0 {
                    traveller = units.gen::<u64>();
                    traveller_age = rng.gen_range(18..86);
                }
                let day = rng.gen_range(0..7u64);
                let h = pick(&mut rng, &trip_hours(day >= 5)) as u64;
                let o = pick(&mut rng, &residents);
                let attraction: Vec<f64> = ZONES
                    .iter()
                    .enumerate()
                    .map(|(j, z)| z.3 * (-0.18 * zone_distance(o, j).max(0.8)).exp())
                    .collect();
                let d = pick(&mut rng, &attraction);
                let km = zone_distance(o, d).max(0.4) * rng.gen_range(0.6..1.5) + 0.2;
                let m = pick(&mut rng, &mode_shares(km));
                let speed_kmh = [4.8, 14.0, 18.0, 28.0, 24.0][m];
                let wait = [0.0, 1.0, 8.0, 5.0, 3.0][m];
                let minutes = (km / speed_kmh * 60.0 + wait) * rng.gen_range(0.85..1.3);
                push(&[
                    (
                        time,
                        START + day * 24 * HOUR + h * HOUR + rng.gen_range(0..HOUR),
                    ),
                    (origin, o as u64),
                    (destination, d as u64),
                    (mode, m as u64),
                    (hour, h),
                    (age, traveller_age),
                    (consent, consent_bits(&mut rng, &[0.8, 0.9, 0.7])),
                    (duration, minutes.round().min(4095.0) as u64),
                    (distance, (km * 1000.0).round() as u64),
                    (unit, traveller),
                ]);
                if row % 4096 == 0 {
                    progress(row);
                }
            }
        }
        "signal" => {
            let [time, zone, hour, consent, devices, dwell] =
                ["time", "zone", "hour", "consent", "devices", "dwell"].map(index);
            let [time, zone, hour, consent, devices, dwell] =
                [time?, zone?, hour?, consent?, devices?, dwell?];
            for row in 0..rows {
                let z = row % ZONES.len();
                let offset = (row / ZONES.len()) as u64;
                let h = offset % 24;
                let weekend = (offset / 24) % 7 >= 5;
                let (_, _, residents, jobs) = ZONES[z];
                let at_work = if weekend { 0.25 } else { 1.0 } * work_presence(h);
                let at_home = 1.0 - 0.6 * at_work;
                let seen = (residents * at_home + jobs * at_work) * 2.2 * rng.gen_range(0.9..1.1);
                let minutes = 20.0 + 35.0 * at_home * rng.gen_range(0.8..1.2);
                push(&[
                    (time, START + offset * HOUR),
                    (zone, z as u64),
                    (hour, h),
                    (consent, 0b11),
                    (devices, seen.round() as u64),
                    (dwell, minutes.round() as u64),
                ]);
                if row % 4096 == 0 {
                    progress(row);
                }
            }
        }
        other => {
            return Err(format!(
                "no generator for dataset `{other}`; built-in: consumption, movement, signal"
            ))
        }
    }
    progress(rows);
    Ok(out)
}

/// A household's fixed facts: district by population, size band, the donor's age and
/// consent bits.
struct Household {
    district: u64,
    size: u64,
    age: u64,
    consent: u64,
}

impl Household {
    fn new(rng: &mut ChaCha12Rng) -> Self {
        let residents: Vec<f64> = ZONES.iter().map(|z| z.2).collect();
        Self {
            district: pick(rng, &residents) as u64,
            size: pick(rng, &[0.32, 0.28, 0.19, 0.14, 0.07]) as u64,
            age: rng.gen_range(18..91),
            consent: consent_bits(rng, &[0.85, 0.6, 0.75]),
        }
    }
}

/// Electricity demand relative to the daily mean.
fn diurnal_load(hour: u64, weekend: bool) -> f64 {
    match (hour, weekend) {
        (0..=5, _) => 0.45,
        (6, false) => 0.9,
        (7..=8, false) => 1.45,
        (6..=9, true) => 0.8,
        (10..=16, false) => 0.7,
        (10..=16, true) => 1.15,
        (17, _) => 1.3,
        (18..=21, _) => 1.9,
        _ => 1.1,
    }
}

fn washing_curve(hour: u64) -> f64 {
    match hour {
        6..=8 => 2.4,
        19..=21 => 2.0,
        0..=4 => 0.1,
        _ => 0.7,
    }
}

fn shopping_chance(hour: u64, weekend: bool) -> f64 {
    match (hour, weekend) {
        (0..=7, _) => 0.005,
        (10..=19, true) => 0.12,
        (17..=20, false) => 0.09,
        _ => 0.04,
    }
}

/// Trip start weights per hour: commuter peaks on weekdays, a midday hump at weekends.
fn trip_hours(weekend: bool) -> [f64; 24] {
    let mut w = [1.0; 24];
    for (h, x) in w.iter_mut().enumerate() {
        *x = match (h, weekend) {
            (0..=5, _) => 0.15,
            (7..=8, false) => 5.0,
            (17..=18, false) => 4.5,
            (10..=18, true) => 2.2,
            (22..=23, _) => 0.6,
            _ => 1.2,
        };
    }
    w
}

fn mode_shares(km: f64) -> [f64; 5] {
    // walk, bike, bus, metro, car
    match km {
        k if k < 1.2 => [0.75, 0.15, 0.04, 0.02, 0.04],
        k if k < 4.0 => [0.10, 0.30, 0.22, 0.23, 0.15],
        k if k < 10.0 => [0.01, 0.08, 0.28, 0.38, 0.25],
        _ => [0.0, 0.02, 0.20, 0.38, 0.40],
    }
}

fn work_presence(hour: u64) -> f64 {
    match hour {
        9..=17 => 1.0,
        8 | 18 => 0.6,
        7 | 19 => 0.3,
        _ => 0.05,
    }
}

fn zone_distance(a: usize, b: usize) -> f64 {
    let (ax, ay, _, _) = ZONES[a];
    let (bx, by, _, _) = ZONES[b];
    ((ax - bx).powi(2) + (ay - by).powi(2)).sqrt()
}

fn consent_bits(rng: &mut ChaCha12Rng, chances: &[f64]) -> u64 {
    chances
        .iter()
        .enumerate()
        .map(|(bit, &p)| u64::from(rng.gen_bool(p)) << bit)
        .sum()
}

/// An index drawn with probability proportional to `weights`.
fn pick(rng: &mut ChaCha12Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.gen_range(0.0..total);
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_within_widths_and_shaped() {
        for name in Schema::builtin_names() {
            let schema = Schema::builtin(name).unwrap();
            let a = generate(&schema, 2000, 7, |_| {}).unwrap();
            assert_eq!(
                a,
                generate(&schema, 2000, 7, |_| {}).unwrap(),
                "{name} is deterministic"
            );
            assert_ne!(
                a,
                generate(&schema, 2000, 8, |_| {}).unwrap(),
                "{name} depends on the seed"
            );
            for (c, column) in schema.declared().iter().enumerate() {
                assert_eq!(a[c].len(), 2000);
                let fits = |v: &u64| zkfabric_circuits::commitment::fits(*v, column.width);
                assert!(
                    a[c].iter().all(fits),
                    "{name}.{} fits {} bits",
                    column.name,
                    column.width
                );
                if !column.labels.is_empty() {
                    assert!(a[c].iter().all(|v| (*v as usize) < column.labels.len()));
                }
            }
        }
        // Evening electricity exceeds night-time electricity.
        let schema = Schema::builtin("consumption").unwrap();
        let data = generate(&schema, 24 * 7 * 20, 1, |_| {}).unwrap();
        let (hour, kwh) = (
            schema.column("hour").unwrap().0,
            schema.column("kwh").unwrap().0,
        );
        let mean_at = |hs: &[u64]| {
            let v: Vec<u64> = (0..data[0].len())
                .filter(|&r| hs.contains(&data[hour][r]))
                .map(|r| data[kwh][r])
                .collect();
            v.iter().sum::<u64>() as f64 / v.len() as f64
        };
        assert!(mean_at(&[19, 20]) > 2.0 * mean_at(&[2, 3]));
    }
}
