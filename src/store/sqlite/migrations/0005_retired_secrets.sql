-- Every secret retired by a rotation keeps signing until its own expiry
-- (24 hours after it was replaced): a list, not one previous secret, so a
-- second rotation does not cut the first one's overlap short.
alter table webhook_endpoints add column retired_secrets text not null default '[]';
update webhook_endpoints
set retired_secrets = json_array(json_object(
        'secret', previous_secret,
        'expires_at', strftime('%Y-%m-%dT%H:%M:%fZ', previous_secret_expires_at / 1000000.0, 'unixepoch')))
where previous_secret is not null and previous_secret_expires_at is not null;
