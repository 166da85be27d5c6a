-- Idempotency keys: a row is claimed (no response yet) while its first
-- request runs, then holds the response to replay for 24 hours.
create table idempotency_keys (
    account_id text not null,
    livemode integer not null,
    key text not null,
    fingerprint text not null,
    created_at integer not null,
    response_status integer,
    response_headers text,
    response_body blob,
    primary key (account_id, livemode, key)
);

create index idempotency_keys_by_age on idempotency_keys (created_at);
