//! Webhooks from processors: `POST /processors/stripe/{account}/webhook`.
//!
//! Stripe signs each event with the endpoint's secret, which the account's
//! sealed configuration holds (test and live may each have one). A bad
//! signature is a 400 that changes nothing. A verified event is applied to
//! the attempt or refund it names (scoped to the signing account and mode),
//! and its id is noted so a replay changes nothing. The application is
//! idempotent too: an outcome settles an attempt only while it is pending,
//! so whichever of the synchronous answer and the webhook comes first wins.
//! A failure to apply answers 500, so Stripe retries.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jiff::Timestamp;

use crate::domain::Scope;
use crate::payments::stripe::{EventEffect, StripeEvent, verify_signature};
use crate::service::ServiceError;
use crate::web::ApiState;
use crate::web::error::{ApiError, ErrorCode};

pub fn router() -> Router<ApiState> {
    Router::new().route("/processors/stripe/{account}/webhook", post(stripe_webhook))
}

fn bad_request(message: &str) -> Response {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message).into_response()
}

async fn stripe_webhook(
    State(state): State<ApiState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let configs = match state.service.stripe_account(&account).await {
        Ok(configs) => configs,
        Err(ServiceError::NotFound) => {
            return ApiError::not_found("No such account.").into_response();
        }
        Err(error) => return ApiError::from(error).into_response(),
    };
    let Some(header) = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return bad_request("The Stripe-Signature header is missing.");
    };
    let now = Timestamp::now().as_second();
    let Some((account_id, livemode, _)) = configs.iter().find(|(_, _, config)| {
        verify_signature(header, &body, &config.webhook_secret, now).is_ok()
    }) else {
        tracing::warn!(account = %account, "a Stripe webhook with a bad signature was refused");
        return bad_request(
            "The Stripe-Signature does not verify with this account's webhook secret.",
        );
    };
    let scope = Scope {
        account_id: account_id.clone(),
        livemode: *livemode,
    };
    let Ok(event) = serde_json::from_slice::<StripeEvent>(&body) else {
        return bad_request("The body is not a Stripe event.");
    };
    match state
        .service
        .processor_event_seen("stripe", &event.id)
        .await
    {
        Ok(true) => {
            tracing::info!(event_id = %event.id, "a Stripe event seen before; nothing to do");
            return StatusCode::OK.into_response();
        }
        Ok(false) => {}
        Err(error) => return ApiError::from(error).into_response(),
    }
    let applied = match event.effect() {
        EventEffect::Payment {
            attempt_id,
            outcome,
        } => {
            state
                .service
                .apply_processor_outcome(&scope, &attempt_id, &outcome)
                .await
        }
        EventEffect::Refunded { payment_intent } => {
            state.service.refresh_refunds(&scope, &payment_intent).await
        }
        EventEffect::Ignored => Ok(()),
    };
    if let Err(error) = applied {
        tracing::warn!(%error, event_id = %event.id, "a Stripe event could not be applied; Stripe will retry");
        return ApiError::from(error).into_response();
    }
    if let Err(error) = state
        .service
        .record_processor_event("stripe", &event.id)
        .await
    {
        tracing::warn!(%error, event_id = %event.id, "could not note a Stripe event as handled");
    }
    tracing::info!(event_id = %event.id, event_type = %event.event_type, "applied a Stripe event");
    StatusCode::OK.into_response()
}
