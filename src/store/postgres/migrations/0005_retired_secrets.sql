-- Every secret retired by a rotation keeps signing until its own expiry
-- (24 hours after it was replaced): a list, not one previous secret, so a
-- second rotation does not cut the first one's overlap short.
alter table webhook_endpoints add column retired_secrets jsonb not null default '[]';
update webhook_endpoints
set retired_secrets = jsonb_build_array(jsonb_build_object(
        'secret', previous_secret,
        'expires_at', to_char(previous_secret_expires_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))
where previous_secret is not null and previous_secret_expires_at is not null;
