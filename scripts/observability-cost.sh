#!/bin/bash
# What metrics and access logs cost a retrieve: one run of wrk (2 threads,
# 64 connections, 10 s) against BINARY on a fresh SQLite database, printing
# its req/s. Compare two builds (or LOGLEVEL=info and warn) by alternating
# runs; see BENCHMARKS.md. Needs wrk (apt-get install wrk).
# usage: LOGLEVEL=warn scripts/observability-cost.sh BINARY LABEL PORT
set -e
bin=$1; label=$2; port=$3
dir=$(mktemp -d)
PAYLINK_RATE_LIMIT_PER_SECOND=10000000 PAYLINK_RATE_LIMIT_BURST=10000000 PAYLINK_LOG=${LOGLEVEL:-warn} \
  timeout 120 $bin serve --addr 127.0.0.1:$port --database-url sqlite://$dir/b.db > $dir/out 2> $dir/err &
pid=$!
for i in $(seq 100); do grep -q "^pl_test_" $dir/out 2>/dev/null && break; sleep 0.1; done
key=$(grep "^pl_test_" $dir/out | tail -1)
id=$(curl -s --max-time 5 -H "Authorization: Bearer $key" -H "Content-Type: application/json" -d '{"amount":4995,"currency":"USD"}' http://127.0.0.1:$port/v1/payment-links | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
timeout 60 wrk -t2 -c64 -d10s -H "Authorization: Bearer $key" http://127.0.0.1:$port/v1/payment-links/$id > $dir/wrk.txt
rps=$(grep "Requests/sec" $dir/wrk.txt | awk '{print $2}')
p50=$(grep -A4 "Latency Distribution" $dir/wrk.txt | head -1)
echo "$label retrieve req/s=$rps"
kill $pid; wait $pid 2>/dev/null || true
rm -rf $dir
