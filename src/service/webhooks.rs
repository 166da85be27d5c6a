//! Webhook use cases: managing endpoints, reading the event log with its
//! deliveries, redelivering, and the dispatcher's side (claim, record).

use jiff::Timestamp;

use super::{Caller, Service, ServiceError, ServiceResult};
use crate::domain::webhook::delivery::{AttemptRecord, ClaimedDelivery, Delivery};
use crate::domain::webhook::endpoint::{
    MAX_ENDPOINTS, MAX_URL_LENGTH, PayloadFormat, WebhookEndpoint, parse_event_types,
    validate_description,
};
use crate::domain::{FieldError, LinkEvent, ids};
use crate::store::EventFilter;
use crate::store::StoreError;
use crate::{domain::webhook::signing, ssrf};

/// A new endpoint as asked for.
#[derive(Debug, Clone, Default)]
pub struct NewEndpoint {
    pub url: String,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    /// `None` is the native format.
    pub format: Option<PayloadFormat>,
}

/// Changes to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointUpdate {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<LinkEvent>,
    pub has_more: bool,
}

impl Service {
    /// Refuses what may not receive webhooks: not http(s), too long, or
    /// (unless allowed) resolving to an internal address. Returns the URL
    /// in the normalised form that was checked, which is what is stored.
    async fn check_endpoint_url(&self, url: &str) -> ServiceResult<String> {
        if url.len() > MAX_URL_LENGTH {
            return Err(FieldError::new(
                "url",
                format!("`url` is at most {MAX_URL_LENGTH} characters."),
            )
            .into());
        }
        let (checked, _) = ssrf::check(url, self.settings.webhook_allow_private)
            .await
            .map_err(|refusal| {
                FieldError::new("url", format!("`url` cannot receive webhooks: {refusal}."))
            })?;
        Ok(checked.into())
    }

    #[tracing::instrument(skip_all, fields(account = %caller.scope.account_id))]
    pub async fn create_webhook_endpoint(
        &self,
        caller: &Caller,
        request: NewEndpoint,
    ) -> ServiceResult<WebhookEndpoint> {
        let events = match &request.events {
            Some(names) => parse_event_types(names)?,
            None => None,
        };
        let format = request.format.unwrap_or(PayloadFormat::Native);
        if let Some(description) = &request.description {
            validate_description(description)?;
        }
        let url = self.check_endpoint_url(&request.url).await?;
        if self
            .store
            .list_webhook_endpoints(&caller.scope)
            .await?
            .len()
            >= MAX_ENDPOINTS
        {
            return Err(FieldError::new(
                "url",
                format!(
                    "An account has at most {MAX_ENDPOINTS} webhook endpoints per mode; delete one first."
                ),
            )
            .into());
        }
        let now = self.now();
        let endpoint = WebhookEndpoint {
            id: ids::new_webhook_endpoint_id(),
            account_id: caller.scope.account_id.clone(),
            livemode: caller.scope.livemode,
            url,
            description: request.description,
            events,
            format,
            enabled: true,
            disabled_reason: None,
            secret: signing::new_secret(),
            retired_secrets: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        self.store
            .insert_webhook_endpoint(self.conceal_endpoint(endpoint.clone()))
            .await?;
        Ok(endpoint)
    }

    pub async fn get_webhook_endpoint(
        &self,
        caller: &Caller,
        id: &str,
    ) -> ServiceResult<WebhookEndpoint> {
        let endpoint = self
            .store
            .get_webhook_endpoint(&caller.scope, id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        self.reveal_endpoint(endpoint)
    }

    pub async fn list_webhook_endpoints(
        &self,
        caller: &Caller,
    ) -> ServiceResult<Vec<WebhookEndpoint>> {
        self.store
            .list_webhook_endpoints(&caller.scope)
            .await?
            .into_iter()
            .map(|endpoint| self.reveal_endpoint(endpoint))
            .collect()
    }

    #[tracing::instrument(skip_all, fields(account = %caller.scope.account_id, id = %id))]
    pub async fn update_webhook_endpoint(
        &self,
        caller: &Caller,
        id: &str,
        update: EndpointUpdate,
    ) -> ServiceResult<WebhookEndpoint> {
        let mut endpoint = self.get_webhook_endpoint(caller, id).await?;
        if let Some(names) = &update.events {
            endpoint.events = parse_event_types(names)?;
        }
        if let Some(description) = update.description {
            validate_description(&description)?;
            endpoint.description = Some(description);
        }
        if let Some(url) = update.url {
            endpoint.url = self.check_endpoint_url(&url).await?;
        }
        if let Some(enabled) = update.enabled {
            endpoint.enabled = enabled;
            if enabled {
                endpoint.disabled_reason = None;
            }
        }
        endpoint.updated_at = self.now();
        if !self
            .store
            .update_webhook_endpoint(self.conceal_endpoint(endpoint.clone()))
            .await?
        {
            return Err(ServiceError::NotFound);
        }
        // Re-enabling may have made waiting deliveries due.
        self.deliveries_waiting.notify_one();
        Ok(endpoint)
    }

    #[tracing::instrument(skip_all, fields(account = %caller.scope.account_id, id = %id))]
    pub async fn delete_webhook_endpoint(&self, caller: &Caller, id: &str) -> ServiceResult<()> {
        if self
            .store
            .delete_webhook_endpoint(&caller.scope, id, self.now())
            .await?
        {
            Ok(())
        } else {
            Err(ServiceError::NotFound)
        }
    }

    /// A new secret; the previous one keeps signing for 24 hours.
    #[tracing::instrument(skip_all, fields(account = %caller.scope.account_id, id = %id))]
    pub async fn rotate_webhook_secret(
        &self,
        caller: &Caller,
        id: &str,
    ) -> ServiceResult<WebhookEndpoint> {
        let mut endpoint = self.get_webhook_endpoint(caller, id).await?;
        endpoint.rotate_secret(signing::new_secret(), self.now())?;
        if !self
            .store
            .update_webhook_endpoint(self.conceal_endpoint(endpoint.clone()))
            .await?
        {
            return Err(ServiceError::NotFound);
        }
        Ok(endpoint)
    }

    // ---- the event log ----

    pub async fn list_events(
        &self,
        caller: &Caller,
        filter: &EventFilter,
        limit: usize,
        starting_after: Option<&str>,
    ) -> ServiceResult<EventPage> {
        if let Some(after) = starting_after
            && self.store.get_event(&caller.scope, after).await?.is_none()
        {
            return Err(FieldError::new(
                "starting_after",
                format!("No event `{after}` to start after."),
            )
            .into());
        }
        let mut events = self
            .store
            .list_events(&caller.scope, filter, limit + 1, starting_after)
            .await?;
        let has_more = events.len() > limit;
        events.truncate(limit);
        Ok(EventPage { events, has_more })
    }

    /// The event and its deliveries, each with every attempt.
    pub async fn get_event(
        &self,
        caller: &Caller,
        id: &str,
    ) -> ServiceResult<(LinkEvent, Vec<Delivery>)> {
        let event = self
            .store
            .get_event(&caller.scope, id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let deliveries = self.store.event_deliveries(&event.id).await?;
        Ok((event, deliveries))
    }

    /// Sends the event again, now, with a fresh retry schedule: to
    /// `endpoint_id` if given (whatever event types it filters on), else to
    /// every enabled endpoint that wants the event's type.
    #[tracing::instrument(skip_all, fields(account = %caller.scope.account_id, id = %id))]
    pub async fn redeliver_event(
        &self,
        caller: &Caller,
        id: &str,
        endpoint_id: Option<&str>,
    ) -> ServiceResult<(LinkEvent, Vec<Delivery>)> {
        let event = self
            .store
            .get_event(&caller.scope, id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let targets: Vec<String> = match endpoint_id {
            Some(endpoint_id) => {
                let endpoint = self
                    .store
                    .get_webhook_endpoint(&caller.scope, endpoint_id)
                    .await?
                    .ok_or_else(|| {
                        FieldError::new("endpoint", format!("No webhook endpoint `{endpoint_id}`."))
                    })?;
                if !endpoint.enabled {
                    return Err(FieldError::new(
                        "endpoint",
                        format!("Webhook endpoint `{endpoint_id}` is disabled; enable it first."),
                    )
                    .into());
                }
                vec![endpoint.id]
            }
            None => self
                .store
                .list_webhook_endpoints(&caller.scope)
                .await?
                .into_iter()
                .filter(|endpoint| endpoint.enabled && endpoint.wants(event.event_type))
                .map(|endpoint| endpoint.id)
                .collect(),
        };
        if targets.is_empty() {
            return Err(FieldError::new(
                "endpoint",
                "No enabled webhook endpoint wants this event's type.",
            )
            .into());
        }
        self.store
            .schedule_redelivery(&event.id, &targets, self.now())
            .await?;
        self.deliveries_waiting.notify_one();
        let deliveries = self.store.event_deliveries(&event.id).await?;
        Ok((event, deliveries))
    }

    // ---- the dispatcher's side ----

    pub async fn claim_deliveries(&self, limit: usize) -> ServiceResult<Vec<ClaimedDelivery>> {
        self.store
            .claim_deliveries(self.now(), limit)
            .await?
            .into_iter()
            .map(|mut claimed| {
                claimed.endpoint = self.reveal_endpoint(claimed.endpoint)?;
                Ok(claimed)
            })
            .collect()
    }

    // ---- endpoint secrets at rest ----

    /// The endpoint as stored: with `PAYLINK_SECRETS_KEY`, its signing
    /// secrets sealed (bound to the endpoint's id); without it, in clear.
    fn conceal_endpoint(&self, mut endpoint: WebhookEndpoint) -> WebhookEndpoint {
        let Some(key) = &self.settings.processors.secrets_key else {
            return endpoint;
        };
        let purpose = endpoint_purpose(&endpoint.id);
        if !is_sealed(&endpoint.secret) {
            endpoint.secret = key.seal(endpoint.secret.as_bytes(), &purpose);
        }
        for retired in &mut endpoint.retired_secrets {
            if !is_sealed(&retired.secret) {
                retired.secret = key.seal(retired.secret.as_bytes(), &purpose);
            }
        }
        endpoint
    }

    /// The endpoint with its secrets in clear, to sign with or to change.
    fn reveal_endpoint(&self, mut endpoint: WebhookEndpoint) -> ServiceResult<WebhookEndpoint> {
        let purpose = endpoint_purpose(&endpoint.id);
        let open = |sealed: &str| -> ServiceResult<String> {
            if !is_sealed(sealed) {
                return Ok(sealed.to_owned());
            }
            let key = self
                .settings
                .processors
                .secrets_key
                .as_ref()
                .ok_or_else(|| {
                    StoreError::Internal(crate::secrets::SecretsError::NoKey.to_string())
                })?;
            let plain = key
                .open(sealed, &purpose)
                .map_err(|error| StoreError::Internal(error.to_string()))?;
            String::from_utf8(plain)
                .map_err(|_| StoreError::Internal("a sealed secret is not text".into()).into())
        };
        endpoint.secret = open(&endpoint.secret)?;
        for retired in &mut endpoint.retired_secrets {
            retired.secret = open(&retired.secret)?;
        }
        Ok(endpoint)
    }

    /// At start-up with `PAYLINK_SECRETS_KEY`: seals every endpoint secret
    /// still stored in clear (endpoints made before the key was set).
    /// Without the key, refuses a database whose secrets are sealed.
    pub async fn seal_endpoint_secrets(&self) -> anyhow::Result<usize> {
        let endpoints = self.store.all_webhook_endpoints().await?;
        let stored_sealed = |e: &WebhookEndpoint| {
            is_sealed(&e.secret) && e.retired_secrets.iter().all(|r| is_sealed(&r.secret))
        };
        if self.settings.processors.secrets_key.is_none() {
            if endpoints.iter().any(|e| is_sealed(&e.secret)) {
                anyhow::bail!(
                    "this database's webhook secrets are sealed: {}",
                    crate::secrets::SecretsError::NoKey
                );
            }
            return Ok(0);
        }
        let mut sealed = 0;
        for endpoint in endpoints {
            if stored_sealed(&endpoint) {
                continue;
            }
            let endpoint = self.reveal_endpoint(endpoint)?;
            self.store
                .update_webhook_endpoint(self.conceal_endpoint(endpoint))
                .await?;
            sealed += 1;
        }
        Ok(sealed)
    }

    /// Records attempts that finished together, in one transaction.
    pub async fn record_attempts(&self, records: Vec<AttemptRecord>) -> ServiceResult<()> {
        Ok(self.store.record_attempts(records).await?)
    }

    pub async fn next_delivery_due(&self, now: Timestamp) -> ServiceResult<Option<Timestamp>> {
        Ok(self.store.next_delivery_due(now).await?)
    }

    /// Resolves when a write on this node may have made a delivery due.
    pub async fn deliveries_waiting(&self) {
        self.deliveries_waiting.notified().await;
    }
}

/// The associated data an endpoint's secrets are sealed with.
fn endpoint_purpose(endpoint_id: &str) -> String {
    format!("webhook_endpoint:{endpoint_id}")
}

/// Clear secrets are `whsec_...`; sealed ones carry the sealing version.
fn is_sealed(stored: &str) -> bool {
    !stored.starts_with("whsec_")
}
