-- Every filter of GET /v1/payment-links is served from an index, so a list
-- costs the same at 10 M links as at 10 k. (On a large existing table these
-- take a while and block writes meanwhile; build them by hand first with
-- `create index concurrently` under the same names to avoid that.)

-- By status, newest first within it (?status=).
create index if not exists payment_links_by_status on payment_links (account_id, livemode, status, created_at desc, id desc);

-- The link a payment paid (?payment=).
create index if not exists payment_links_by_payment on payment_links (payment_id) where payment_id is not null;

-- Metadata pairs and line items' products, by containment (@>).
create index if not exists payment_links_by_metadata on payment_links using gin (metadata jsonb_path_ops);
create index if not exists payment_links_by_product on payment_links using gin (line_items jsonb_path_ops);
