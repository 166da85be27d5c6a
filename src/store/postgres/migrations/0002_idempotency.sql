-- Idempotency keys: a row is claimed (no response yet) while its first
-- request runs, then holds the response to replay for 24 hours.
create table idempotency_keys (
    account_id text not null,
    livemode boolean not null,
    key text not null,
    fingerprint text not null,
    created_at timestamptz not null,
    response_status integer,
    response_headers jsonb,
    response_body bytea,
    primary key (account_id, livemode, key)
);

create index idempotency_keys_by_age on idempotency_keys (created_at);
