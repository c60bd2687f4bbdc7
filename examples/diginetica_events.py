#!/usr/bin/env python3
"""Turns the Diginetica training sessions into files `vitrine import` and `vitrine train`
read: one product per item id, one view event per click. Writes to the directory given
(default /tmp), never into the repository: the dataset's licence is research only.

    python3 examples/diginetica_events.py ../shared/data/diginetica /tmp
"""
import csv
import gzip
import json
import os
import sys
import time

src = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/diginetica"
out = sys.argv[2] if len(sys.argv) > 2 else "/tmp"
now = int(time.time())
items = set()
rows = 0
with gzip.open(os.path.join(src, "train_sessions.csv.gz"), "rt") as f, open(
    os.path.join(out, "digi_events.ndjson"), "w"
) as events:
    reader = csv.DictReader(f)
    for row in reader:
        item = row["item_id"]
        items.add(item)
        # Clicks 30 s apart within a session, sessions in file order over the last days.
        at = now - 6 * 86_400 + (rows // 1000) * 60 + int(row["position"]) * 30
        events.write(
            json.dumps(
                {
                    "event_id": f"d{rows}",
                    "type": "view",
                    "session_id": f"s{row['session_id']}",
                    "product_id": f"i{item}",
                    "timestamp": min(at, now),
                }
            )
            + "\n"
        )
        rows += 1
with open(os.path.join(out, "digi_products.ndjson"), "w") as products:
    for item in sorted(items, key=int):
        products.write(
            json.dumps(
                {
                    "id": f"i{item}",
                    "title": f"Item {item}",
                    "category": "all",
                    "price": {"amount": 1000, "currency": "GBP"},
                    "inventory": 100,
                }
            )
            + "\n"
        )
print(f"{rows} events, {len(items)} products in {out}")
