#!/usr/bin/env bash
# Runs researcher.py against a node it starts, as a researcher with only pip would: a
# node with a week of generated consumption readings (differentially private, as the
# built-in schema says), development keys its operator made and pinned, a researcher
# token; then a virtual environment with requirements.txt from the registry, and the
# script, which fails if the bundle does not verify or its DataFrame differs from the
# verified answer. CI runs it (.ci/run).
#
# Usage: examples/python/run.sh [ROWS]    (KEEP=1 keeps the work folder)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROWS=${1:-8192}
WORK=$(mktemp -d)
NODE=
# Stops the node and removes the work folder, keeping the script's own exit status: a
# node killed by SIGTERM makes `wait` return 143, which must not become the script's.
cleanup() {
    local status=$?
    if [ -n "$NODE" ]; then
        kill "$NODE" 2>/dev/null || true
        wait "$NODE" 2>/dev/null || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then echo "work folder: $WORK"; else rm -rf "$WORK"; fi
    exit "$status"
}
trap cleanup EXIT
step() { printf '\n== [%d s] %s\n' "$SECONDS" "$*"; }

step "building zkfabric"
cargo build --quiet --bin zkfabric
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
ZK="$TARGET_DIR/debug/zkfabric"
SQL="SELECT household_size, COUNT(*), SUM(kwh) FROM consumption GROUP BY household_size"

step "the operator: $ROWS readings, sealed; keys for the question; a researcher token"
cat >"$WORK/node.toml" <<TOML
[server]
data_dir = "$WORK/data"
TOML
zk() { "$ZK" --config "$WORK/node.toml" "$@"; }
zk generate consumption --rows "$ROWS" --out "$WORK/readings.parquet"
zk ingest consumption "$WORK/readings.parquet"
zk seal consumption
zk setup "$SQL" --purpose energy-research --epsilon 1 --delta 1e-7 >"$WORK/trusted-keys"
NODE_KEY=$(zk catalog | sed -n 's/^node key \([0-9a-f]\{64\}\).*/\1/p')
zk token --name notebook --role researcher >>"$WORK/node.toml" 2>"$WORK/token.txt"
export ZKFABRIC_TOKEN
ZKFABRIC_TOKEN=$(tail -1 "$WORK/token.txt")

step "the node, on a free loopback port"
# The binary itself, not the `zk` function: `&` on a function forks a shell, and killing
# that shell would leave the node running.
"$ZK" --config "$WORK/node.toml" serve --listen 127.0.0.1:0 >"$WORK/serve.out" 2>"$WORK/serve.log" &
NODE=$!
for _ in $(seq 300); do
    grep -q 'http://' "$WORK/serve.out" 2>/dev/null && break
    kill -0 "$NODE" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
    sleep 0.2
done
URL=$(grep -o 'http://[0-9.:]*' "$WORK/serve.out" | head -1)
[ -n "$URL" ] || { echo "run.sh: the node printed no address" >&2; exit 1; }

step "the researcher: a virtual environment from requirements.txt"
TARGET=()
if python3 -m venv "$WORK/venv" 2>/dev/null; then
    PYTHON="$WORK/venv/bin/python"
else
    # No venv module (some distributions package it apart): pip into a folder of our own.
    echo "python3 -m venv is unavailable; installing into $WORK/site instead"
    export PYTHONPATH="$WORK/site"
    PYTHON=python3
    TARGET=(--target "$WORK/site")
fi
"$PYTHON" -m pip install --quiet --disable-pip-version-check "${TARGET[@]}" \
    -r examples/python/requirements.txt

step "researcher.py against ${URL/http/grpc}"
"$PYTHON" examples/python/researcher.py \
    --uri "${URL/http/grpc}" --trusted-keys "$WORK/trusted-keys" --node-key "$NODE_KEY" \
    --zkfabric "$ZK" --sql "$SQL" --out "$WORK/answers"
step "the comparison refuses a table that differs from the verified one"
"$PYTHON" - "$WORK/answers" <<'PY'
import sys
import pandas as pd
import pyarrow.parquet as pq
sys.path.insert(0, "examples/python")
from researcher import compare
answers = sys.argv[1]
frame = pq.read_table(f"{answers}/answer.parquet").to_pandas()
verified = pd.read_csv(f"{answers}/verified.csv", dtype=str, keep_default_na=False)
assert compare(frame, verified) == [], "the received table differs from the verified one"
changed = frame.copy()
column = frame.columns[1]
row = changed[column].first_valid_index()
changed[column] = changed[column].astype(object)
changed.loc[row if row is not None else 0, column] = 1e9
assert compare(changed, verified), f"a changed {column!r} went unnoticed"
assert compare(frame.iloc[:-1], verified), "a dropped row went unnoticed"
print(f"a changed {column!r} and a dropped row are both reported")
PY
step "done"
