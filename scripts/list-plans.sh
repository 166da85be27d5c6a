#!/usr/bin/env bash
# The query plan of every GET /v1/payment-links filter, on both stores, as
# BENCHMARKS.md shows them. The statements are the ones the stores build
# (src/store/sql.rs, src/store/{sqlite,postgres}/rows.rs), with literals in
# place of their parameters.
#
#   scripts/list-plans.sh [POSTGRES_URL]
#
# SQLite: a freshly migrated database (no ANALYZE is ever run, so the
# planner's choice does not depend on the rows). PostgreSQL: the database
# given, e.g. the one `cargo bench --bench throughput` filled with 600 k
# links (PAYLINK_BENCH_POSTGRES_URL), analysed first.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
target/release/paylink migrate --database-url "sqlite://$scratch/plans.db" >/dev/null

now=1800000000000000 # microseconds, as SQLite stores times
scope="l.account_id = 'acct_B' and l.livemode = 0"
order="order by l.created_at desc, l.id desc limit 21"
declare -a names=(
  "no filter"
  "status=active"
  "status=expired"
  "status=cancelled"
  "created[gt]/[lt]"
  "order_reference"
  "payment"
  "product_id"
  "metadata[k]=v"
  "next page (starting_after)"
)
declare -a sqlite_filters=(
  ""
  "and l.status = 'active' and l.expires_at > $now"
  "and (l.status = 'expired' or (l.status = 'active' and l.expires_at <= $now))"
  "and l.status = 'cancelled'"
  "and l.created_at > 1700000000000000 and l.created_at < $now"
  "and l.order_reference = 'ORD-77'"
  "and l.payment_id = 'pay_x'"
  "PRODUCT"
  "METADATA"
  "and (l.created_at < $now or (l.created_at = $now and l.id < 'plink_x'))"
)
declare -a postgres_filters=(
  ""
  "and l.status = 'active' and l.expires_at > now()"
  "and (l.status = 'expired' or (l.status = 'active' and l.expires_at <= now()))"
  "and l.status = 'cancelled'"
  "and l.created_at > now() - interval '1 day' and l.created_at < now()"
  "and l.order_reference = 'ORD-77'"
  "and l.payment_id = 'pay_x'"
  "and l.line_items @> jsonb_build_array(jsonb_build_object('product_id', 'shoe-42'::text))"
  "and l.metadata @> jsonb_build_object('order_id'::text, 'nope'::text)"
  "and (l.created_at, l.id) < (now(), 'plink_x')"
)

echo "## SQLite"
for i in "${!names[@]}"; do
  echo "### ${names[$i]}"
  # A metadata pair or a product drives the list from its pair table
  # (src/store/sqlite/links.rs, list_links).
  case "${sqlite_filters[$i]}" in
    PRODUCT) from="link_products d cross join payment_links l on l.id = d.link_id
               where d.account_id = 'acct_B' and d.livemode = 0 and d.product_id = 'shoe-42' and"
             filter=""; by="order by d.created_at desc, d.link_id desc limit 21" ;;
    METADATA) from="link_metadata d cross join payment_links l on l.id = d.link_id
               where d.account_id = 'acct_B' and d.livemode = 0 and d.key = 'order_id' and d.value = 'nope' and"
              filter=""; by="order by d.created_at desc, d.link_id desc limit 21" ;;
    *) from="payment_links l where"; filter="${sqlite_filters[$i]}"; by="$order" ;;
  esac
  sqlite3 "$scratch/plans.db" "explain query plan select l.* from $from $scope $filter $by"
done

if [ -n "${1:-}" ]; then
  pg_scope="l.account_id = (select account_id from payment_links limit 1) and l.livemode = false"
  psql -q "$1" -c "analyze payment_links" >/dev/null
  echo "## PostgreSQL ($(psql -qtA "$1" -c 'select count(*) from payment_links') links)"
  for i in "${!names[@]}"; do
    echo "### ${names[$i]}"
    psql -qtA "$1" -c "explain (costs off) select * from payment_links l where $pg_scope ${postgres_filters[$i]} $order"
  done
fi
