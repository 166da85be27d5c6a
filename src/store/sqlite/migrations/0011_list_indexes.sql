-- Every filter of GET /v1/payment-links is served from an index, so a list
-- costs the same at 10 M links as at 10 k.

-- By status, newest first within it (?status=).
create index payment_links_by_status on payment_links (account_id, livemode, status, created_at desc, id desc);

-- By order reference and by the payment that paid the link, each newest
-- first within its value: SQLite's planner (no statistics are gathered)
-- takes an index that serves both the filter and the order over one that
-- serves the order alone.
drop index payment_links_by_order_reference;
create index payment_links_by_order_reference on payment_links (account_id, livemode, order_reference, created_at desc, id desc);
create index payment_links_by_payment on payment_links (account_id, livemode, payment_id, created_at desc, id desc) where payment_id is not null;

-- SQLite indexes no JSON contents, so metadata pairs and line items'
-- products have a row each here (?metadata[k]=v, ?product_id=), newest
-- first within each value like the links themselves, so a filtered list
-- walks this key in order and stops at the page's end. Kept by the
-- triggers below inside the link's own transaction.
create table link_metadata (
    account_id text not null,
    livemode integer not null,
    key text not null,
    value text not null,
    created_at integer not null,
    link_id text not null,
    primary key (account_id, livemode, key, value, created_at desc, link_id desc)
) without rowid;

create table link_products (
    account_id text not null,
    livemode integer not null,
    product_id text not null,
    created_at integer not null,
    link_id text not null,
    primary key (account_id, livemode, product_id, created_at desc, link_id desc)
) without rowid;

insert or ignore into link_metadata
    select l.account_id, l.livemode, entry.key, entry.value, l.created_at, l.id
    from payment_links l, json_each(l.metadata) as entry
    where entry.type = 'text';

insert or ignore into link_products
    select l.account_id, l.livemode, json_extract(item.value, '$.product_id'), l.created_at, l.id
    from payment_links l, json_each(l.line_items) as item
    where json_extract(item.value, '$.product_id') is not null;

create trigger link_metadata_on_insert after insert on payment_links
begin
    insert or ignore into link_metadata
        select new.account_id, new.livemode, entry.key, entry.value, new.created_at, new.id
        from json_each(new.metadata) as entry
        where entry.type = 'text';
    insert or ignore into link_products
        select new.account_id, new.livemode, json_extract(item.value, '$.product_id'), new.created_at, new.id
        from json_each(new.line_items) as item
        where json_extract(item.value, '$.product_id') is not null;
end;

-- Every transition rewrites the metadata column; only a real change
-- (an update's metadata) touches the pairs.
create trigger link_metadata_on_update after update of metadata on payment_links
when old.metadata is not new.metadata
begin
    delete from link_metadata
        where (account_id, livemode, key, value, created_at, link_id) in (
            select old.account_id, old.livemode, entry.key, entry.value, old.created_at, old.id
            from json_each(old.metadata) as entry
            where entry.type = 'text'
        );
    insert or ignore into link_metadata
        select new.account_id, new.livemode, entry.key, entry.value, new.created_at, new.id
        from json_each(new.metadata) as entry
        where entry.type = 'text';
end;
