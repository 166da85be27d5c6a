//! The composition root: the one place that knows every layer. It merges
//! the native API, the dialects and the checkout into one application and
//! hands the webhook dispatcher the payload formats those layers own.

pub mod payloads;
