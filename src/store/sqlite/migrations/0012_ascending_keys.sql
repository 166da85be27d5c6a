-- The list indexes and pair tables of 0011 (and the scope index of 0001)
-- were keyed newest first (`created_at desc, id desc`). A new link is the
-- newest, so each of its index entries went to the left end of its range,
-- where a full page takes SQLite's three-page rebalance and pages stay
-- about half full. Keyed ascending, a new entry lands at the right end of
-- its range: at the index's end SQLite appends to a new page without
-- rebalancing, and pages fill. Lists, newest first, walk the same keys
-- backwards (the plans in BENCHMARKS.md are unchanged).

drop index payment_links_by_scope;
create index payment_links_by_scope on payment_links (account_id, livemode, created_at, id);
drop index payment_links_by_status;
create index payment_links_by_status on payment_links (account_id, livemode, status, created_at, id);
drop index payment_links_by_order_reference;
create index payment_links_by_order_reference on payment_links (account_id, livemode, order_reference, created_at, id);
drop index payment_links_by_payment;
create index payment_links_by_payment on payment_links (account_id, livemode, payment_id, created_at, id) where payment_id is not null;

drop trigger link_metadata_on_insert;
drop trigger link_metadata_on_update;

create table link_metadata_ascending (
    account_id text not null,
    livemode integer not null,
    key text not null,
    value text not null,
    created_at integer not null,
    link_id text not null,
    primary key (account_id, livemode, key, value, created_at, link_id)
) without rowid;
insert into link_metadata_ascending select account_id, livemode, key, value, created_at, link_id from link_metadata;
drop table link_metadata;
alter table link_metadata_ascending rename to link_metadata;

create table link_products_ascending (
    account_id text not null,
    livemode integer not null,
    product_id text not null,
    created_at integer not null,
    link_id text not null,
    primary key (account_id, livemode, product_id, created_at, link_id)
) without rowid;
insert into link_products_ascending select account_id, livemode, product_id, created_at, link_id from link_products;
drop table link_products;
alter table link_products_ascending rename to link_products;

-- The triggers of 0011, unchanged.
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
