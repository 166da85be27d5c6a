-- How the hosted pages present a merchant (display name, support email,
-- logo, terms and privacy links), as one JSON object.
alter table accounts add column branding jsonb;
