#!/usr/bin/env python3
"""A researcher's session with a zkfabric node over Arrow Flight SQL, from Python.

Connects with a bearer token (ADBC's Flight SQL driver), lists the node's tables, runs a
GROUP BY (proven by the node: this takes as long as the proof), takes the answer as a
pandas DataFrame, fetches the answer's bundle, verifies it offline with `zkfabric verify`
against pinned keys and the SQL it asked, checks that the DataFrame says exactly what the
verified bundle says, and draws the verified answer as a bar chart (PNG), suppressed
groups marked. The folder --out gets answer.parquet (the table as received),
answer.zkf (the bundle), verified.csv (the verified answer) and answer.png.

    ZKFABRIC_TOKEN=zkf_... python researcher.py --uri grpc://127.0.0.1:50051 \\
        --trusted-keys trusted-keys --node-key HEX --out answers/

Exits 1 if the bundle does not verify or the DataFrame differs from it.
"""

import argparse
import math
import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import pandas as pd
import pyarrow.flight as flight
import pyarrow.parquet as pq
from adbc_driver_flightsql import DatabaseOptions

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

HEADER = DatabaseOptions.RPC_CALL_HEADER_PREFIX.value
DEFAULT_SQL = (
    "SELECT household_size, COUNT(*), SUM(kwh) FROM consumption GROUP BY household_size"
)


def arguments():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--uri", default="grpc://127.0.0.1:50051",
                   help="the node (grpc+tls://... when it serves TLS)")
    p.add_argument("--token", default=os.environ.get("ZKFABRIC_TOKEN"),
                   help="researcher token (default: $ZKFABRIC_TOKEN)")
    p.add_argument("--sql", default=DEFAULT_SQL)
    p.add_argument("--purpose", default="energy-research")
    p.add_argument("--epsilon", default="1", help="privacy cost, on a dp dataset")
    p.add_argument("--delta", default="1e-7")
    p.add_argument("--trusted-keys", required=True,
                   help="the keys you pin (from the node's operator or a ceremony)")
    p.add_argument("--node-key", help="the node's public key (hex), pinned too")
    p.add_argument("--zkfabric", default="zkfabric", help="the zkfabric binary")
    p.add_argument("--out", default=".", help="folder for the bundle, table and chart")
    args = p.parse_args()
    if not args.token:
        p.error("no token: pass --token or set ZKFABRIC_TOKEN")
    return args


def main():
    args = arguments()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    headers = {
        DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {args.token}",
        HEADER + "x-zkfabric-purpose": args.purpose,
        HEADER + "x-zkfabric-epsilon": args.epsilon,
        HEADER + "x-zkfabric-delta": args.delta,
    }
    # The node answers read-only queries and has no transactions: autocommit.
    with flight_sql.connect(args.uri, db_kwargs=headers, autocommit=True) as conn:
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        tables = [
            t["table_name"]
            for catalog in objects
            for schema in catalog["catalog_db_schemas"] or []
            for t in schema["db_schema_tables"] or []
        ]
        print("tables:", ", ".join(tables))
        consumption = conn.adbc_get_table_schema("consumption")
        measures = [
            f"{f.name} ({f.metadata[b'unit'].decode()})"
            for f in consumption
            if f.metadata and b"unit" in f.metadata
        ]
        print("consumption measures:", ", ".join(measures))

        with conn.cursor() as cursor:
            # A fresh nonce per question: it keys the public half of the noise.
            nonce = secrets.token_hex(32)
            cursor.adbc_statement.set_options(**{HEADER + "x-zkfabric-nonce": nonce})
            print(f"asking (the node proves the answer first): {args.sql}")
            cursor.execute(args.sql)
            answer = cursor.fetch_arrow_table()
    metadata = answer.schema.metadata
    bundle_id = metadata[b"zkfabric.bundle_id"].decode()
    frame = answer.to_pandas()
    print(frame.to_string(index=False))
    pq.write_table(answer, out / "answer.parquet")
    print("notes:", metadata[b"zkfabric.notes"].decode())

    bundle = out / "answer.zkf"
    bundle.write_bytes(fetch_bundle(args.uri, args.token, bundle_id))
    verified_csv = out / "verified.csv"
    verify = [
        args.zkfabric, "verify", str(bundle),
        "--trusted-keys", args.trusted_keys,
        "--sql", args.sql, "--purpose", args.purpose,
        "--format", "csv", "--out-table", str(verified_csv),
    ]
    if metadata[b"zkfabric.privacy"] == b"dp":
        verify += ["--epsilon", args.epsilon, "--delta", args.delta]
    if args.node_key:
        verify += ["--node-key", args.node_key]
    if subprocess.run(verify).returncode != 0:
        sys.exit(f"{bundle}: the bundle did not verify")

    verified = pd.read_csv(verified_csv, dtype=str, keep_default_na=False)
    differences = compare(frame, verified)
    if differences:
        sys.exit("the DataFrame differs from the verified bundle:\n  " + "\n  ".join(differences))
    print(f"the DataFrame is the verified answer ({len(frame)} rows; bundle {bundle})")

    chart = out / "answer.png"
    draw(frame, answer.schema, args.sql, chart)
    print(f"chart: {chart}")


def fetch_bundle(uri, token, bundle_id):
    """The bundle's bytes, by the node's GetBundle action."""
    client = flight.FlightClient(uri)
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
    results = list(client.do_action(flight.Action("GetBundle", bundle_id.encode()), options))
    return results[0].body.to_pybytes()


def compare(frame, verified):
    """Where the DataFrame and the verified CSV disagree (nothing when they agree).

    The CSV leaves interval columns out when no cell has an interval; the DataFrame then
    has them, entirely null.
    """
    differences = []
    extra = [c for c in frame.columns if c not in verified.columns]
    for column in extra:
        if not (column.endswith((" low", " high")) and frame[column].isna().all()):
            differences.append(f"column {column!r} is not in the verified table")
    missing = [c for c in verified.columns if c not in frame.columns]
    differences += [f"column {c!r} is missing" for c in missing]
    if len(frame) != len(verified):
        differences.append(f"{len(frame)} rows, the verified table has {len(verified)}")
        return differences
    for column in verified.columns:
        if column in missing:
            continue
        for row, (value, text) in enumerate(zip(frame[column], verified[column])):
            if not same(value, text):
                differences.append(f"row {row}, {column!r}: {value!r}, verified {text!r}")
    return differences


def same(value, text):
    """Whether a DataFrame cell says what the verified CSV's text says."""
    if text == "":
        return value is None or (isinstance(value, float) and math.isnan(value))
    if isinstance(value, bool):
        return str(value).lower() == text
    if isinstance(value, str):
        return value == text
    try:
        return float(value) == float(text)
    except (TypeError, ValueError):
        return False


def draw(frame, schema, sql, path):
    """Bars per group of the first number, 95% intervals as error bars when the answer is
    noisy; suppressed groups hatched and labelled."""
    labels = [f.name for f in schema if str(f.type) == "string"]
    numbers = [
        f.name for f in schema
        if str(f.type) != "string" and not f.name.endswith((" low", " high"))
    ]
    value = numbers[0]
    groups = (
        frame[labels].astype(str).agg(" / ".join, axis=1) if labels else pd.Series(["all"])
    )
    heights = pd.to_numeric(frame[value], errors="coerce").astype(float)
    top = heights.max() if heights.notna().any() else 1.0
    fig, ax = plt.subplots(figsize=(max(4, len(frame) * 0.9), 4))
    shown = heights.notna()
    x = pd.Series(range(len(frame)))
    low, high = f"{value} low", f"{value} high"
    errors = None
    if low in frame.columns:
        lows = pd.to_numeric(frame[low], errors="coerce").astype(float)
        highs = pd.to_numeric(frame[high], errors="coerce").astype(float)
        errors = [(heights - lows)[shown], (highs - heights)[shown]]
    ax.bar(x[shown], heights[shown], yerr=errors, capsize=4, color="#4c72b0")
    for position in x[~shown]:
        ax.bar(position, top * 0.05, color="none", edgecolor="grey", hatch="//")
        ax.annotate("suppressed", (position, top * 0.06), ha="center", fontsize=8,
                    color="grey")
    ax.set_xticks(list(x), list(groups))
    unit = schema.field(value).metadata or {}
    unit = unit.get(b"unit", b"").decode()
    ax.set_ylabel(f"{value} ({unit})" if unit else value)
    ax.set_xlabel(" / ".join(labels))
    ax.set_title(textwrap.fill(sql, 60), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
