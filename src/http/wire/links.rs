//! Payment links and their refunds, lists, bulk cancels and stats.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::domain::link::{LinkUpdate, NewLink};
use crate::domain::{self, LinkStatus};
use crate::web::schemas::CurrencyCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentLinkStatus {
    Active,
    Processing,
    Paid,
    Expired,
    Cancelled,
}

impl From<LinkStatus> for PaymentLinkStatus {
    fn from(status: LinkStatus) -> Self {
        match status {
            LinkStatus::Active => Self::Active,
            LinkStatus::Processing => Self::Processing,
            LinkStatus::Paid => Self::Paid,
            LinkStatus::Expired => Self::Expired,
            LinkStatus::Cancelled => Self::Cancelled,
        }
    }
}

impl From<PaymentLinkStatus> for LinkStatus {
    fn from(status: PaymentLinkStatus) -> Self {
        match status {
            PaymentLinkStatus::Active => Self::Active,
            PaymentLinkStatus::Processing => Self::Processing,
            PaymentLinkStatus::Paid => Self::Paid,
            PaymentLinkStatus::Expired => Self::Expired,
            PaymentLinkStatus::Cancelled => Self::Cancelled,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerBody {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineItemBody {
    pub product_id: String,
    pub name: String,
    /// At least 1.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub quantity: i64,
    /// Minor units, > 0.
    #[schema(minimum = 1, maximum = 99_999_999_999_i64)]
    pub unit_amount: i64,
}

/// Create a payment link. Give `amount`, or `line_items` (then `amount`,
/// if also given, must equal their sum).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePaymentLinkRequest {
    /// Minor units of `currency` (4995 = $49.95; JPY has no minor unit), > 0.
    #[schema(minimum = 1, maximum = 99_999_999_999_i64)]
    pub amount: Option<i64>,
    /// ISO 4217 code, e.g. `USD` (any case; stored upper case).
    #[schema(value_type = CurrencyCode, example = "USD")]
    pub currency: String,
    /// At most 1000 characters.
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    /// Only `one_time`, the default.
    pub payment_type: Option<String>,
    pub customer: Option<CustomerBody>,
    pub line_items: Option<Vec<LineItemBody>>,
    /// Your order id, at most 255 characters; filterable, not unique.
    #[schema(min_length = 1, max_length = 255)]
    pub order_reference: Option<String>,
    /// Up to 50 string keys (<= 40 chars) with string values (<= 500 chars).
    pub metadata: Option<BTreeMap<String, String>>,
    /// Absolute http(s) URL.
    #[schema(max_length = 2048)]
    pub success_url: Option<String>,
    /// Absolute http(s) URL.
    #[schema(max_length = 2048)]
    pub cancel_url: Option<String>,
    /// RFC 3339; in the future and at most one year ahead. Default: 14 days from now.
    pub expires_at: Option<Timestamp>,
}

impl From<CreatePaymentLinkRequest> for NewLink {
    fn from(request: CreatePaymentLinkRequest) -> Self {
        NewLink {
            amount: request.amount,
            currency: Some(request.currency),
            description: request.description,
            payment_type: request.payment_type,
            customer: request.customer.map(|c| domain::Customer {
                email: c.email,
                first_name: c.first_name,
                last_name: c.last_name,
            }),
            line_items: request.line_items.map(|items| {
                items
                    .into_iter()
                    .map(|item| domain::LineItem {
                        product_id: item.product_id,
                        name: item.name,
                        quantity: item.quantity,
                        unit_amount: item.unit_amount,
                    })
                    .collect()
            }),
            order_reference: request.order_reference,
            metadata: request.metadata,
            success_url: request.success_url,
            cancel_url: request.cancel_url,
            expires_at: request.expires_at,
        }
    }
}

/// Change an active link. `metadata` merges into the existing metadata; a
/// key set to `""` or `null` is removed. `description: null` clears it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePaymentLinkRequest {
    pub expires_at: Option<Timestamp>,
    pub metadata: Option<BTreeMap<String, Option<String>>>,
    #[serde(default, deserialize_with = "present_or_null")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
}

/// Distinguishes an absent field (outer `None`) from an explicit `null`.
fn present_or_null<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(deserializer)?))
}

impl From<UpdatePaymentLinkRequest> for LinkUpdate {
    fn from(request: UpdatePaymentLinkRequest) -> Self {
        LinkUpdate {
            expires_at: request.expires_at,
            metadata: request.metadata.map(|changes| {
                changes
                    .into_iter()
                    .map(|(key, value)| (key, value.filter(|v| !v.is_empty())))
                    .collect()
            }),
            description: request.description,
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Internal: kept on the link, in its event and its webhooks; never
    /// shown to the customer.
    #[schema(schema_with = crate::web::schemas::reason)]
    pub reason: Option<String>,
    /// Shown to the customer on the cancelled link's page.
    #[schema(schema_with = crate::web::schemas::customer_message)]
    pub customer_message: Option<String>,
}

/// Bulk cancel: the list filters as top-level fields, plus `reason` and `dry_run`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkCancelRequest {
    pub status: Option<PaymentLinkStatus>,
    pub created_after: Option<Timestamp>,
    pub created_before: Option<Timestamp>,
    pub order_reference: Option<String>,
    pub product_id: Option<String>,
    /// Every pair must match.
    pub metadata: Option<BTreeMap<String, String>>,
    /// 1..1000, default 1000.
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Continue after this link id (the last of the previous call).
    pub starting_after: Option<String>,
    #[schema(schema_with = crate::web::schemas::reason)]
    pub reason: Option<String>,
    /// Report what would happen; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Required (`true`) to act with no filter at all, on every link of
    /// the account and mode: a stray empty POST must not cancel them.
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentLinkResource {
    pub id: String,
    /// Always `payment_link`.
    pub object: &'static str,
    pub livemode: bool,
    /// The hosted payment page.
    pub url: String,
    pub slug: String,
    /// Minor units.
    pub amount: i64,
    pub currency: String,
    pub description: Option<String>,
    pub payment_type: String,
    pub customer: Option<CustomerBody>,
    pub line_items: Option<Vec<LineItemBody>>,
    pub order_reference: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    pub status: PaymentLinkStatus,
    pub expires_at: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub cancelled_at: Option<Timestamp>,
    /// Internal: never shown on a public page.
    pub cancellation_reason: Option<String>,
    /// What the cancelled link's page tells the customer.
    pub customer_message: Option<String>,
    pub paid_at: Option<Timestamp>,
    pub payment_id: Option<String>,
    /// Minor units refunded or being refunded (pending refunds count).
    pub amount_refunded: i64,
}

impl PaymentLinkResource {
    pub fn new(link: domain::Link, public_url: &str) -> Self {
        Self {
            url: crate::web::hosted_url(public_url, &link.slug),
            id: link.id,
            object: "payment_link",
            livemode: link.livemode,
            slug: link.slug,
            amount: link.amount,
            currency: link.currency.code().to_owned(),
            description: link.description,
            payment_type: "one_time".to_owned(),
            customer: link.customer.map(|c| CustomerBody {
                email: c.email,
                first_name: c.first_name,
                last_name: c.last_name,
            }),
            line_items: link.line_items.map(|items| {
                items
                    .into_iter()
                    .map(|item| LineItemBody {
                        product_id: item.product_id,
                        name: item.name,
                        quantity: item.quantity,
                        unit_amount: item.unit_amount,
                    })
                    .collect()
            }),
            order_reference: link.order_reference,
            metadata: link.metadata,
            success_url: link.success_url,
            cancel_url: link.cancel_url,
            status: link.status.into(),
            expires_at: link.expires_at,
            created_at: link.created_at,
            updated_at: link.updated_at,
            cancelled_at: link.cancelled_at,
            cancellation_reason: link.cancellation_reason,
            customer_message: link.customer_message,
            paid_at: link.paid_at,
            payment_id: link.payment_id,
            amount_refunded: link.amount_refunded,
        }
    }
}

/// Refund a paid link: all that is left (the default) or `amount`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRefundRequest {
    /// Minor units, > 0 and at most what is left to refund; default: all of it.
    #[schema(minimum = 1, maximum = 99_999_999_999_i64)]
    pub amount: Option<i64>,
    #[schema(schema_with = crate::web::schemas::reason)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundKindBody {
    /// Asked for through the API.
    Requested,
    /// Made by paylink: a payment that succeeded after its link was
    /// cancelled or expired is given back automatically.
    LatePayment,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefundResource {
    /// `re_...`
    pub id: String,
    /// Always `refund`.
    pub object: &'static str,
    pub payment_link: String,
    pub livemode: bool,
    /// Minor units of `currency`.
    pub amount: i64,
    pub currency: String,
    pub status: RefundStatus,
    pub kind: RefundKindBody,
    pub reason: Option<String>,
    /// The payment refunded (the link's `payment_id`).
    pub payment_id: String,
    /// The processor's id of the refund (`re_...` at Stripe), once made.
    pub processor_refund_id: Option<String>,
    pub failure_message: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<domain::Refund> for RefundResource {
    fn from(refund: domain::Refund) -> Self {
        Self {
            id: refund.id,
            object: "refund",
            payment_link: refund.link_id,
            livemode: refund.livemode,
            amount: refund.amount,
            currency: refund.currency.code().to_owned(),
            status: match refund.state {
                domain::RefundState::Pending => RefundStatus::Pending,
                domain::RefundState::Succeeded => RefundStatus::Succeeded,
                domain::RefundState::Failed => RefundStatus::Failed,
            },
            kind: match refund.kind {
                domain::RefundKind::Requested => RefundKindBody::Requested,
                domain::RefundKind::LatePayment => RefundKindBody::LatePayment,
            },
            reason: refund.reason,
            payment_id: refund.payment_id,
            processor_refund_id: refund.processor_refund_id,
            failure_message: refund.failure_message,
            created_at: refund.created_at,
            updated_at: refund.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefundList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<RefundResource>,
    /// Always false: a link's refunds come in one page.
    pub has_more: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentLinkList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<PaymentLinkResource>,
    /// More links follow; pass the last `id` as `starting_after`.
    pub has_more: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BulkOutcomeKind {
    /// Cancelled by this call.
    Cancelled,
    /// `dry_run`: this call would cancel it.
    WouldCancel,
    /// Was already cancelled; left unchanged.
    AlreadyCancelled,
    /// Its status does not allow cancelling (see `error`).
    Refused,
    /// Could not be processed now (see `error`); retry.
    Failed,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkOutcomeError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkCancelItem {
    pub id: String,
    pub outcome: BulkOutcomeKind,
    /// The link's status after this call.
    pub status: PaymentLinkStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<BulkOutcomeError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkCancelResponse {
    /// Always `bulk_cancel`.
    pub object: &'static str,
    pub dry_run: bool,
    pub data: Vec<BulkCancelItem>,
    /// Count of links per outcome in `data`.
    pub summary: BTreeMap<String, usize>,
    /// More links match; call again with `starting_after` = the last `id` in `data`.
    pub has_more: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatsRowBody {
    pub status: PaymentLinkStatus,
    pub currency: String,
    pub count: i64,
    /// Sum of `amount` in minor units of `currency`.
    pub amount: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatsResponse {
    /// Always `payment_link_stats`.
    pub object: &'static str,
    pub livemode: bool,
    pub created_after: Option<Timestamp>,
    pub created_before: Option<Timestamp>,
    /// Links per status (every status present, zeros included).
    pub count_by_status: BTreeMap<String, i64>,
    /// One row per (status, currency) that has links.
    pub data: Vec<StatsRowBody>,
}
