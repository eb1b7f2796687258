"""Writes an NDJSON body of Meta-like events, about SIZE_MIB MiB, to OUT.

    python3 benches/make_ndjson.py SIZE_MIB OUT
"""
import json
import sys

size_mib, out = int(sys.argv[1]), sys.argv[2]
lines, size, i = [], 0, 0
while size < 1024 * 1024:
    event = {"event_name": "Purchase", "event_time": 1764400000 + i,
             "user_data": {"em": f"  Customer.{i}@Example.com ", "ph": f"+1 650 555 {i % 10000:04d}",
                           "fn": "Zoë", "ln": f"O'Brien-{i}", "client_ip_address": f"203.0.{i % 250}.{i % 200}",
                           "client_user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)"},
             "custom_data": {"currency": "usd", "value": 12.5,
                             "contents": [{"id": f"sku-{j}", "quantity": j} for j in range(8)]}}
    line = json.dumps(event, ensure_ascii=False) + "\n"
    lines.append(line)
    size += len(line.encode())
    i += 1
block = "".join(lines).encode()
with open(out, "wb") as f:
    for _ in range(size_mib):
        f.write(block)
