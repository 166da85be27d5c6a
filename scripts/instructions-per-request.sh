#!/bin/bash
# User-space instructions per request of one paylink build, counted by
# valgrind's callgrind: unlike req/s on this shared two-core machine, the
# count repeats within about 1 % from run to run, so it can tell two builds
# apart by a few percent (BENCHMARKS.md, "Instructions per request").
#
#   scripts/instructions-per-request.sh BINARY [retrieve|create|cancel ...]
#
# Each path: a fresh SQLite database with LINKS (20000) links seeded
# straight through SQL (copies of one link made through the API, ids
# plink_B + 23 digits, as the throughput bench seeds them), the server
# under callgrind, 3 s of warm-up reads, counters zeroed, SECS (8) of
# `wrk -t1 -c4`, counters dumped. Counts the kernel's work not at all, and
# time-driven background work (the checkpointer) once per second whatever
# the request rate. Needs valgrind, wrk and python3.
set -euo pipefail
bin=$(realpath "$1"); shift
paths=("${@:-retrieve create cancel}")
links=${LINKS:-20000}; secs=${SECS:-8}; port=${PORT:-18093}
body='{"amount":4995,"currency":"USD","description":"Bench order","order_reference":"ORD-1042","metadata":{"order_id":"1042","channel":"bench"}}'
scratch=$(mktemp -d)
trap 'kill $(cat "$scratch/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$scratch"' EXIT
sed -n '/^local counter/,/^end$/p; /^function init/,/^end$/p; /^function request/,/^end$/p' \
  benches/throughput/load.rs > "$scratch/load.lua"

seed() { # database template first last
  python3 - "$@" <<'EOF'
import sqlite3, sys
path, template, first, last = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = sqlite3.connect(path, timeout=30, isolation_level=None)
cols = lambda t: [r[1] for r in c.execute(f"pragma table_info({t})")]
links = {"id": "printf('plink_B%023d', n.i)", "slug": "printf('B%026d', n.i)",
         "created_at": "t.created_at - n.i", "order_reference": "printf('ORD-%d', n.i)"}
events = {"id": "printf('evt_B%024d', n.i)", "link_id": "printf('plink_B%023d', n.i)",
          "link": "replace(t.link, t.link_id, printf('plink_B%023d', n.i))"}
lc = cols("payment_links"); ec = [x for x in cols("events") if x != "seq"]
n = f"with recursive n(i) as (select {first} union all select i + 1 from n where i < {last})"
c.executescript(f"""begin immediate;
{n} insert into payment_links ({", ".join(lc)}) select {", ".join(links.get(x, "t." + x) for x in lc)}
  from n, payment_links t where t.id = '{template}';
{n} insert into events ({", ".join(ec)}) select {", ".join(events.get(x, "t." + x) for x in ec)}
  from n, events t where t.link_id = '{template}' and t.type = 'payment_link.created';
commit;""")
EOF
}

for path in ${paths[@]}; do
  rm -f "$scratch"/db* "$scratch"/cg.*
  PAYLINK_RATE_LIMIT_PER_SECOND=100000000 PAYLINK_RATE_LIMIT_BURST=100000000 PAYLINK_LOG=warn \
    valgrind --tool=callgrind --callgrind-out-file="$scratch/cg.%p" \
    "$bin" serve --addr 127.0.0.1:$port --database-url "sqlite://$scratch/db" \
    > "$scratch/out" 2> "$scratch/err" &
  echo $! > "$scratch/pid"
  for _ in $(seq 600); do
    grep -q '^pl_test_' "$scratch/out" 2>/dev/null && curl -sf -o /dev/null --max-time 2 127.0.0.1:$port/health && break
    sleep 0.1
  done
  key=$(grep '^pl_test_' "$scratch/out" | head -1)
  template=$(curl -sf --max-time 10 -H "Authorization: Bearer $key" -H 'content-type: application/json' \
    -d "$body" 127.0.0.1:$port/v1/payment-links | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  seed "$scratch/db" "$template" 1 "$links"
  pid=$(cat "$scratch/pid")
  timeout 60 wrk -t1 -c4 -d3s -s "$scratch/load.lua" http://127.0.0.1:$port -- retrieve "$key" 1 "$links" "$body" 1 > /dev/null
  callgrind_control -z "$pid" > /dev/null
  timeout 120 wrk -t1 -c4 -d${secs}s -s "$scratch/load.lua" http://127.0.0.1:$port -- "$path" "$key" 1 "$links" "$body" 1 > "$scratch/wrk"
  callgrind_control -d "$pid" > /dev/null
  sleep 1
  requests=$(awk '/requests in/ {print $1}' "$scratch/wrk")
  failed=$(awk '/Non-2xx/ {print $NF}' "$scratch/wrk")
  instructions=$(awk '/^(summary|totals):/ && !found {print $2; found = 1}' "$scratch"/cg.*.1)
  echo "$path: $((instructions / requests)) instructions per request ($requests requests, ${failed:-0} not 2xx)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
