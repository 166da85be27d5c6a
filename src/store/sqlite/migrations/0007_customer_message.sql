-- What the hosted page tells the customer about a cancel (the reason
-- stays internal).
alter table payment_links add column customer_message text;
