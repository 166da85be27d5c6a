-- The dispatcher's claims and its looks for the next due delivery walk
-- `webhook_deliveries_due` in order from its front: they read the
-- deliveries in flight (leased) and the ones they take, never the backlog
-- behind them. Left to the planner, they did not: with statistics gathered
-- before a backlog built up (autovacuum looks again only after a tenth of
-- the table has changed), pending deliveries look rare, and it read every
-- pending delivery, once per enabled endpoint, and sorted them, on every
-- claim and every look. A backlog's drain then grew with its square (10,000
-- pending: 230 ms a claim). PostgreSQL takes no hints; a function's own
-- settings are the supported way to rule plans out for one statement, so
-- each runs in a function that forbids bitmap scans and sorts, leaving the
-- ordered walk as the one plan. PL/pgSQL, not SQL: it keeps each
-- statement's plan for the session (a SQL function with settings of its
-- own is planned on every call; the due look runs after every write).

create function claim_due_deliveries(due_by timestamptz, lease_until timestamptz, most bigint)
returns table (event_id text, endpoint_id text, attempt_count integer)
language plpgsql
set enable_bitmapscan = off
set enable_sort = off
as $$
#variable_conflict use_column
begin
    -- Rows another node is claiming right now are skipped, not waited for;
    -- a row it claimed a moment ago fails the lease condition when
    -- re-checked after its lock is released. Either way, one owner.
    return query
    with due as (
        select d.event_id, d.endpoint_id
        from webhook_deliveries d join webhook_endpoints w on w.id = d.endpoint_id
        where d.status = 'pending' and d.next_attempt_at <= due_by
          and (d.lease_expires_at is null or d.lease_expires_at <= due_by)
          and w.enabled and w.deleted_at is null
        order by d.next_attempt_at
        limit most
        for update of d skip locked
    )
    update webhook_deliveries d set lease_expires_at = lease_until
    from due where d.event_id = due.event_id and d.endpoint_id = due.endpoint_id
    returning d.event_id, d.endpoint_id, d.attempt_count;
end
$$;

create function next_delivery_due(free_at timestamptz)
returns timestamptz
language plpgsql
stable
set enable_bitmapscan = off
set enable_sort = off
as $$
begin
    return (
        select d.next_attempt_at
        from webhook_deliveries d join webhook_endpoints w on w.id = d.endpoint_id
        where d.status = 'pending' and (d.lease_expires_at is null or d.lease_expires_at <= free_at)
          and w.enabled and w.deleted_at is null
        order by d.next_attempt_at
        limit 1
    );
end
$$;

-- A claim changes only `lease_expires_at`, which no index holds: with room
-- on the row's page, PostgreSQL updates it in place of the old version
-- (a heap-only tuple) instead of adding an entry to each of the table's
-- indexes. Rows are written densely by default, leaving no such room;
-- keep a third of each new page free for them.
alter table webhook_deliveries set (fillfactor = 70);
