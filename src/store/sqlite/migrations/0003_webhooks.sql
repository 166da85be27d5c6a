-- Webhook endpoints. The secret is kept in clear: signing needs it (an
-- HMAC key cannot be hashed away). A deleted endpoint keeps its row so
-- past deliveries still name it.
create table webhook_endpoints (
    id text primary key,
    account_id text not null references accounts (id),
    livemode integer not null,
    url text not null,
    description text,
    events text, -- JSON array of event types; null = every type
    format text not null check (format in ('native', 'gale')),
    enabled integer not null,
    disabled_reason text,
    secret text not null,
    previous_secret text,
    previous_secret_expires_at integer,
    created_at integer not null,
    updated_at integer not null,
    deleted_at integer
);

create index webhook_endpoints_by_scope on webhook_endpoints (account_id, livemode, created_at);

-- One delivery per (event, endpoint), written with the event in the
-- transition's transaction. `lease_expires_at` is a node's claim while it
-- attempts; `attempt_count` counts attempts of the current schedule.
create table webhook_deliveries (
    event_id text not null references events (id),
    endpoint_id text not null references webhook_endpoints (id),
    status text not null check (status in ('pending', 'succeeded', 'failed')),
    attempt_count integer not null default 0,
    next_attempt_at integer,
    lease_expires_at integer,
    created_at integer not null,
    updated_at integer not null,
    primary key (event_id, endpoint_id)
);

create index webhook_deliveries_due on webhook_deliveries (next_attempt_at) where status = 'pending';
create index webhook_deliveries_by_endpoint on webhook_deliveries (endpoint_id) where status = 'pending';

create table webhook_attempts (
    id integer primary key autoincrement,
    event_id text not null,
    endpoint_id text not null,
    attempted_at integer not null,
    status_code integer,
    latency_ms integer not null,
    error text,
    foreign key (event_id, endpoint_id) references webhook_deliveries (event_id, endpoint_id)
);

create index webhook_attempts_by_delivery on webhook_attempts (event_id, endpoint_id, id);

-- GET /v1/events lists an account's events newest first.
create index events_by_scope on events (account_id, livemode, seq);
