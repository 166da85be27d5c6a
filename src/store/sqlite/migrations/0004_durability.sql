-- Payment attempts: written with active -> processing, settled with the
-- link's next transition; the reconciler finds the pending ones.
create table payment_attempts (
    id text primary key,
    link_id text not null references payment_links (id),
    account_id text not null,
    livemode integer not null,
    amount integer not null check (amount > 0),
    currency text not null,
    processor text not null,
    state text not null check (state in ('pending', 'succeeded', 'failed')),
    payment_id text,
    failure_message text,
    card_brand text,
    card_last4 text,
    created_at integer not null,
    updated_at integer not null
);

create index payment_attempts_by_link on payment_attempts (link_id);
create index payment_attempts_pending on payment_attempts (created_at) where state = 'pending';

-- A link left processing before attempts existed gets one, so the
-- reconciler resolves it like any other.
insert into payment_attempts (id, link_id, account_id, livemode, amount, currency, processor, state, created_at, updated_at)
select 'pa_migrated_' || id, id, account_id, livemode, amount, currency, 'test', 'pending', updated_at, updated_at
from payment_links where status = 'processing';

-- The built-in test processor's ledger: the first answer for an attempt
-- id is the answer for ever.
create table test_processor_charges (
    attempt_id text primary key,
    outcome text not null,
    created_at integer not null
);

-- The event a claimed idempotency key's request committed, written in the
-- same transaction as that change: a retry after a crash replays it
-- instead of running the change again.
alter table idempotency_keys add column committed_event text;
-- When the running request took its claim; a claim older than the lease
-- was abandoned (its node died). created_at keeps bounding the 24 hours.
alter table idempotency_keys add column claimed_at integer;
update idempotency_keys set claimed_at = created_at;

-- Secrets every node shares (the checkout's CSRF key), made on first use.
create table server_secrets (
    name text primary key,
    value text not null
);
