create table accounts (
    id text primary key,
    name text not null unique,
    suspended boolean not null default false,
    created_at timestamptz not null
);

create table api_keys (
    id text primary key,
    account_id text not null references accounts (id),
    livemode boolean not null,
    key_hash text not null unique,
    key_prefix text not null,
    created_at timestamptz not null
);

create table payment_links (
    id text primary key,
    account_id text not null references accounts (id),
    livemode boolean not null,
    slug text not null unique,
    amount bigint not null check (amount > 0),
    currency text not null,
    description text,
    payment_type text not null,
    customer jsonb,
    line_items jsonb,
    order_reference text,
    metadata jsonb not null,
    success_url text,
    cancel_url text,
    status text not null check (status in ('active', 'processing', 'paid', 'expired', 'cancelled')),
    expires_at timestamptz not null,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    cancelled_at timestamptz,
    cancellation_reason text,
    paid_at timestamptz,
    payment_id text,
    version bigint not null
);

create index payment_links_by_scope on payment_links (account_id, livemode, created_at desc, id desc);
create index payment_links_by_order_reference on payment_links (account_id, livemode, order_reference);
create index payment_links_due on payment_links (expires_at) where status = 'active';

-- The outbox: one row per transition, written in the transition's transaction.
create table events (
    seq bigserial primary key,
    id text not null unique,
    link_id text not null references payment_links (id),
    account_id text not null,
    livemode boolean not null,
    type text not null,
    created_at timestamptz not null,
    actor jsonb not null,
    reason text,
    link jsonb not null,
    previous_attributes jsonb
);

create index events_by_link on events (link_id, seq);
