-- Timestamps are integer microseconds since the Unix epoch: they sort
-- correctly, unlike RFC 3339 text whose fraction length varies.
create table accounts (
    id text primary key,
    name text not null unique,
    suspended integer not null default 0,
    created_at integer not null
);

create table api_keys (
    id text primary key,
    account_id text not null references accounts (id),
    livemode integer not null,
    key_hash text not null unique,
    key_prefix text not null,
    created_at integer not null
);

create table payment_links (
    id text primary key,
    account_id text not null references accounts (id),
    livemode integer not null,
    slug text not null unique,
    amount integer not null check (amount > 0),
    currency text not null,
    description text,
    payment_type text not null,
    customer text,
    line_items text,
    order_reference text,
    metadata text not null,
    success_url text,
    cancel_url text,
    status text not null check (status in ('active', 'processing', 'paid', 'expired', 'cancelled')),
    expires_at integer not null,
    created_at integer not null,
    updated_at integer not null,
    cancelled_at integer,
    cancellation_reason text,
    paid_at integer,
    payment_id text,
    version integer not null
);

create index payment_links_by_scope on payment_links (account_id, livemode, created_at desc, id desc);
create index payment_links_by_order_reference on payment_links (account_id, livemode, order_reference);
create index payment_links_due on payment_links (expires_at) where status = 'active';

-- The outbox: one row per transition, written in the transition's transaction.
create table events (
    seq integer primary key autoincrement,
    id text not null unique,
    link_id text not null references payment_links (id),
    account_id text not null,
    livemode integer not null,
    type text not null,
    created_at integer not null,
    actor text not null,
    reason text,
    link text not null,
    previous_attributes text
);

create index events_by_link on events (link_id, seq);
