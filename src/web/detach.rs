//! Requests that change something run to their end, whatever the client
//! does (the durability rule, DESIGN.md section 0).
//!
//! A request future is dropped when its client hangs up or the request
//! times out, at whatever `.await` it was in. For a read that is harmless;
//! for a write it could leave a change half made: a payment charged but not
//! recorded, an idempotency key claimed but never answered. So every
//! request that may change state (any method but GET, HEAD and OPTIONS)
//! runs its handler in a task of its own, which the request future only
//! waits for. The tasks are tracked, so a graceful shutdown waits for them
//! too; what a crash still cuts is finished by the reconcilers.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use tokio_util::task::TaskTracker;

use super::error::ApiError;

pub async fn run_to_completion(
    State(tasks): State<TaskTracker>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    match tasks
        .spawn(super::request_id::carry(next.run(request)))
        .await
    {
        Ok(response) => response,
        Err(error) => {
            tracing::error!(%error, "a request's task failed");
            ApiError::internal().into_response()
        }
    }
}
