-- Keys can be revoked (expires_at = now) or rolled (the old key expires
-- when its grace period ends); last_used_at helps find the unused ones.
alter table api_keys add column expires_at timestamptz;
alter table api_keys add column last_used_at timestamptz;
