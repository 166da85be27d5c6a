-- Refunds: reserved on the link (amount_refunded counts pending and
-- succeeded refunds, never more than the amount), settled with the link's
-- next transition; the reconciler finds the pending ones.
alter table payment_links add column amount_refunded integer not null default 0
    check (amount_refunded >= 0 and amount_refunded <= amount);
-- A refund event carries the refund as it left it.
alter table events add column refund text;

create table refunds (
    id text primary key,
    link_id text not null references payment_links (id),
    state text not null check (state in ('pending', 'succeeded', 'failed')),
    created_at integer not null,
    body text not null
);
create index refunds_by_link on refunds (link_id, created_at);
create index refunds_pending on refunds (created_at) where state = 'pending';

-- The processor's own id of an attempt's payment (a Stripe PaymentIntent),
-- written as soon as the processor has made it, before it is confirmed:
-- the reconciler asks the processor about it by this id.
alter table payment_attempts add column processor_reference text;

-- The processor each account uses per mode, its secrets sealed (AEAD)
-- under PAYLINK_SECRETS_KEY.
create table processor_accounts (
    account_id text not null references accounts (id),
    livemode integer not null,
    processor text not null,
    sealed_config text not null,
    updated_at integer not null,
    primary key (account_id, livemode)
);

-- Processor webhook events already applied (each is handled once).
create table processor_events (
    processor text not null,
    event_id text not null,
    received_at integer not null,
    primary key (processor, event_id)
);
