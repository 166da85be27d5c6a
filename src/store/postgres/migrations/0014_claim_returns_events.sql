-- A claim returns each claimed delivery's event with it, read in the same
-- statement as the lease: one round trip where there were two. The join
-- belongs inside the function. In READ COMMITTED a statement reads as of
-- its start, and a PL/pgSQL function's own statement as of a later
-- moment: a delivery committed between the two was leased by the function
-- and then not found by a join outside it (its event, written with it,
-- not yet visible there), and so went unsent until its lease ran out. In
-- one statement a delivery and the event written with it are seen
-- together or not at all.

drop function claim_due_deliveries(timestamptz, timestamptz, bigint);

create function claim_due_deliveries(due_by timestamptz, lease_until timestamptz, most bigint)
returns table (
    endpoint_id text, attempt_count integer,
    id text, type text, created_at timestamptz, actor jsonb, reason text, link jsonb,
    previous_attributes jsonb, refund jsonb
)
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
    ), claimed as (
        update webhook_deliveries d set lease_expires_at = lease_until
        from due where d.event_id = due.event_id and d.endpoint_id = due.endpoint_id
        returning d.event_id, d.endpoint_id, d.attempt_count
    )
    select c.endpoint_id, c.attempt_count,
           e.id, e.type, e.created_at, e.actor, e.reason, e.link, e.previous_attributes, e.refund
    from claimed c join events e on e.id = c.event_id;
end
$$;
