#!/usr/bin/env bash
# A local multi-party Groth16 ceremony for the circuits of one query, end to end, with the
# established tooling (snarkjs, installed from the npm registry into a temporary folder):
#
#   1. phase 1 (powers of tau): two independent contributions and a random beacon;
#   2. phase 2, per circuit shape the query needs (chunk and root combine): the shape's
#      constraint system exported by `zkfabric keys export-r1cs`, two contributions, a
#      beacon, and `snarkjs zkey verify` of the final key against the .r1cs and phase 1;
#   3. `zkfabric keys import` of each final key (refusing a key made for another shape, for
#      a constraint system with one coefficient changed, or without a phase-2 contribution);
#   4. the query proven by a node in `keys.mode = "ceremony"` (refused before the import),
#      verified by `zkfabric verify --trusted-keys` against the ceremony's fingerprints
#      (which reject the same query proven with development keys), and every proof
#      exported with `zkfabric export snarkjs` and verified by `snarkjs groth16 verify`
#      (which rejects a tampered public signal).
#
# Needs Node.js (18 or later) and npm. Usage: scripts/ceremony.sh [ROWS_PER_CHUNK]
# (default 8: a small shape, as CI runs it). KEEP=1 keeps the work folder.
# In production, phase 1 is a public transcript (e.g. the Hermez/Perpetual Powers of Tau
# ceremony) and each phase-2 contribution is made by a different party on their own
# machine; here every party is this script.
set -euo pipefail
cd "$(dirname "$0")/.."

SNARKJS_VERSION=0.7.6
CHUNK_ROWS=${1:-8}
# A public random value nobody controls, in production (e.g. a future block hash).
BEACON=0ac3e5d1a8f3b5f2c7e9d4b6a1c3e5f7092b4d6f8a1c3e5079b2d4f6a8c1e3f5

for tool in node npm; do
    command -v "$tool" >/dev/null || { echo "ceremony.sh: needs $tool (Node.js 18 or later)" >&2; exit 1; }
done
WORK=$(mktemp -d)
if [ "${KEEP:-0}" = 1 ]; then echo "work folder: $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi
step() { printf '\n== %s\n' "$*"; }
fail() { echo "ceremony.sh: FAILED: $*" >&2; exit 1; }
# Runs a command that must fail, and checks that its output says why.
refused() {
    local expected=$1; shift
    local out
    if out=$("$@" 2>&1); then fail "accepted: $* ($out)"; fi
    grep -qF -- "$expected" <<<"$out" || fail "refused for another reason than '$expected': $out"
    echo "refused as expected: $(grep -F -- "$expected" <<<"$out" | head -1 | cut -c1-200)"
}

step "building zkfabric; installing snarkjs $SNARKJS_VERSION from the npm registry"
cargo build --quiet --bin zkfabric
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
ZK=("$TARGET_DIR/debug/zkfabric" --data-dir "$WORK/data")
npm install --silent --no-audit --no-fund --prefix "$WORK/npm" "snarkjs@$SNARKJS_VERSION" >/dev/null
SNARKJS="$WORK/npm/node_modules/.bin/snarkjs"
# snarkjs logs through its own logger; its exit status says whether a check held.
snarkjs() { "$SNARKJS" "$@" >"$WORK/snarkjs.log" 2>&1 || { cat "$WORK/snarkjs.log" >&2; return 1; }; }

step "a node with consumption readings, $CHUNK_ROWS rows per chunk"
# Answered exactly here: a noisy root's coins would need a phase 1 of 2^14 (minutes more
# of snarkjs); the noisy root's proofs are checked by snarkjs below, under development keys.
cat >"$WORK/development.toml" <<TOML
[store]
chunk_rows = $CHUNK_ROWS
[privacy]
threshold_only = ["consumption"]
[query]
default_purpose = "energy-research"
min_group_size = 2
TOML
sed 's/^\[store\]/[keys]\nmode = "ceremony"\n[store]/' "$WORK/development.toml" >"$WORK/ceremony.toml"
"${ZK[@]}" generate consumption --rows $((CHUNK_ROWS * 4)) --out "$WORK/readings.csv"
"${ZK[@]}" --config "$WORK/development.toml" ingest consumption "$WORK/readings.csv"
"${ZK[@]}" --config "$WORK/development.toml" seal consumption
SQL="SELECT COUNT(*), SUM(kwh) FROM consumption WHERE hour BETWEEN 0 AND 23"
NODE_KEY=$("${ZK[@]}" catalog show consumption | sed -n 's/.*node key *\([0-9a-f]\{64\}\).*/\1/p' | head -1)
[ -n "$NODE_KEY" ] || fail "no node key in the catalog"

step "the query proven with development keys (single-party setup), for comparison"
"${ZK[@]}" --config "$WORK/development.toml" query "$SQL" --out "$WORK/development.zkf" >/dev/null
refused 'has no ceremony key' "${ZK[@]}" --config "$WORK/ceremony.toml" query "$SQL" --out "$WORK/refused.zkf"

"${ZK[@]}" --config "$WORK/development.toml" keys shapes "$SQL" | tee "$WORK/shapes.tsv"
shape() { awk -F'\t' -v role="$1" '$1 == role { print $3 }' "$WORK/shapes.tsv"; }
POWER=0
for role in chunk root; do
    out=$("${ZK[@]}" keys export-r1cs --shape "$(shape $role)" --out "$WORK/$role.r1cs")
    echo "$out"
    p=$(sed -n 's/.*at least 2^\([0-9]*\).*/\1/p' <<<"$out")
    [ "$p" -gt "$POWER" ] && POWER=$p
done

step "phase 1: powers of tau 2^$POWER, two contributions and a beacon"
snarkjs powersoftau new bn128 "$POWER" "$WORK/pot_0.ptau"
snarkjs powersoftau contribute "$WORK/pot_0.ptau" "$WORK/pot_1.ptau" --name="first contributor" -e="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
snarkjs powersoftau contribute "$WORK/pot_1.ptau" "$WORK/pot_2.ptau" --name="second contributor" -e="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
snarkjs powersoftau beacon "$WORK/pot_2.ptau" "$WORK/pot_beacon.ptau" "$BEACON" 10 -n="phase 1 beacon"
snarkjs powersoftau prepare phase2 "$WORK/pot_beacon.ptau" "$WORK/pot_final.ptau"
snarkjs powersoftau verify "$WORK/pot_final.ptau"
echo "phase 1 verified"

phase2() { # r1cs, name -> $WORK/<name>_final.zkey
    local r1cs=$1 name=$2
    snarkjs groth16 setup "$r1cs" "$WORK/pot_final.ptau" "$WORK/${name}_0.zkey"
    snarkjs zkey contribute "$WORK/${name}_0.zkey" "$WORK/${name}_1.zkey" --name="first contributor" -e="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    snarkjs zkey contribute "$WORK/${name}_1.zkey" "$WORK/${name}_2.zkey" --name="second contributor" -e="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    snarkjs zkey beacon "$WORK/${name}_2.zkey" "$WORK/${name}_final.zkey" "$BEACON" 10 -n="phase 2 beacon"
    snarkjs zkey verify "$r1cs" "$WORK/pot_final.ptau" "$WORK/${name}_final.zkey"
}

: >"$WORK/trusted-keys.txt"
for role in chunk root; do
    step "phase 2 for the $role circuit: two contributions, a beacon, zkey verify, import"
    phase2 "$WORK/$role.r1cs" "$role"
    "${ZK[@]}" keys import "$WORK/${role}_final.zkey" --shape "$(shape $role)" | tee -a "$WORK/trusted-keys.txt"
done
"${ZK[@]}" keys list

step "keys for another shape, for a changed constraint, or without a phase-2 contribution are refused"
refused 'another constraint system' "${ZK[@]}" keys import "$WORK/root_final.zkey" --shape "$(shape chunk)"
# snarkjs' `groth16 setup` output (delta = gamma = the generator): whoever holds it knows
# delta and could prove anything with it.
refused 'delta equals gamma' "${ZK[@]}" keys import "$WORK/chunk_0.zkey" --shape "$(shape chunk)"
# One A coefficient equal to 1 becomes 2: the same circuit but for one constraint.
node - "$WORK/chunk.r1cs" "$WORK/changed.r1cs" <<'JS'
const fs = require("fs");
const [input, output] = process.argv.slice(2);
const b = fs.readFileSync(input);
let at = 12;
for (let s = 0; s < b.readUInt32LE(8); s++) {
    const type = b.readUInt32LE(at), size = Number(b.readBigUInt64LE(at + 4));
    if (type === 2) {
        let p = at + 12;
        for (;;) {
            const terms = b.readUInt32LE(p);
            for (let t = 0; t < terms; t++) {
                const coefficient = p + 4 + t * 36 + 4;
                if (b[coefficient] === 1 && b.subarray(coefficient + 1, coefficient + 32).every(x => x === 0)) {
                    b[coefficient] = 2;
                    fs.writeFileSync(output, b);
                    process.exit(0);
                }
            }
            p += 4 + terms * 36; // the A combination; then skip B and C
            for (let skip = 0; skip < 2; skip++) p += 4 + b.readUInt32LE(p) * 36;
        }
    }
    at += 12 + size;
}
process.exit(1);
JS
phase2 "$WORK/changed.r1cs" changed
refused 'has another value in the key' "${ZK[@]}" keys import "$WORK/changed_final.zkey" --shape "$(shape chunk)"

step "the query proven in keys.mode = \"ceremony\" and verified against the ceremony's fingerprints"
"${ZK[@]}" --config "$WORK/ceremony.toml" query "$SQL" --out "$WORK/answer.zkf"
"${ZK[@]}" verify "$WORK/answer.zkf" --trusted-keys "$WORK/trusted-keys.txt" --node-key "$NODE_KEY"
refused 'is not among the trusted keys' "${ZK[@]}" verify "$WORK/development.zkf" --trusted-keys "$WORK/trusted-keys.txt" --node-key "$NODE_KEY"

step "every proof exported for snarkjs and verified by snarkjs groth16 verify"
"${ZK[@]}" export snarkjs "$WORK/answer.zkf" --out "$WORK/snarkjs" --trusted-keys "$WORK/trusted-keys.txt" --node-key "$NODE_KEY"
proofs=0
for folder in "$WORK"/snarkjs/*/; do
    snarkjs groth16 verify "$folder/verification_key.json" "$folder/public.json" "$folder/proof.json"
    grep -q 'OK!' "$WORK/snarkjs.log" || fail "snarkjs did not accept $folder"
    proofs=$((proofs + 1))
done
echo "snarkjs accepted all $proofs proofs"
for role in chunk root; do
    snarkjs zkey export verificationkey "$WORK/${role}_final.zkey" "$WORK/${role}_vk.json"
done
node - "$WORK" <<'JS'
const fs = require("fs");
const work = process.argv[2];
const same = (a, b) => {
    const [x, y] = [a, b].map(f => JSON.parse(fs.readFileSync(f)));
    const keys = Object.keys(x).sort();
    return JSON.stringify(keys) === JSON.stringify(Object.keys(y).sort())
        && keys.every(k => JSON.stringify(x[k]) === JSON.stringify(y[k]));
};
if (!same(`${work}/chunk_vk.json`, `${work}/snarkjs/chunk-0/verification_key.json`)) throw "chunk verification key differs from snarkjs' export";
if (!same(`${work}/root_vk.json`, `${work}/snarkjs/root/verification_key.json`)) throw "root verification key differs from snarkjs' export";
console.log("exported verification keys equal snarkjs' own exports of the ceremony keys");
JS
# A tampered public signal: the chunk's first public input plus one.
node -e '
const fs = require("fs"); const f = process.argv[1];
const s = JSON.parse(fs.readFileSync(f)); s[0] = (BigInt(s[0]) + 1n).toString();
fs.writeFileSync(f, JSON.stringify(s));' "$WORK/snarkjs/chunk-0/public.json"
if "$SNARKJS" groth16 verify "$WORK/snarkjs/chunk-0/verification_key.json" "$WORK/snarkjs/chunk-0/public.json" "$WORK/snarkjs/chunk-0/proof.json" >"$WORK/snarkjs.log" 2>&1 \
    && ! grep -q 'Invalid proof' "$WORK/snarkjs.log"; then
    cat "$WORK/snarkjs.log"; fail "snarkjs accepted a tampered public signal"
fi
echo "snarkjs rejected the tampered public signal"

step "a differentially private answer (movement, development keys) verified by snarkjs too"
"${ZK[@]}" generate movement --rows $((CHUNK_ROWS * 2)) --out "$WORK/trips.csv"
"${ZK[@]}" --config "$WORK/development.toml" ingest movement "$WORK/trips.csv"
"${ZK[@]}" --config "$WORK/development.toml" seal movement
NOISY="SELECT COUNT(*), SUM(distance) FROM movement"
"${ZK[@]}" --config "$WORK/development.toml" query "$NOISY" --purpose public-health --out "$WORK/noisy.zkf" >/dev/null
"${ZK[@]}" --config "$WORK/development.toml" keys shapes "$NOISY" --purpose public-health | awk -F'\t' '{ print $3 }' >"$WORK/noisy-shapes.txt"
grep -q 'output=noisy' "$WORK/noisy-shapes.txt" || fail "the movement answer has no noisy root"
"${ZK[@]}" export snarkjs "$WORK/noisy.zkf" --out "$WORK/noisy-snarkjs" --allow-unpinned-keys
snarkjs groth16 verify "$WORK/noisy-snarkjs/root/verification_key.json" "$WORK/noisy-snarkjs/root/public.json" "$WORK/noisy-snarkjs/root/proof.json"
grep -q 'OK!' "$WORK/snarkjs.log" || fail "snarkjs did not accept the noisy root"
echo "snarkjs accepted the noisy root combine's proof"

step "ceremony end to end: OK"
