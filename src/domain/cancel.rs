//! Cancel policies: which statuses a cancel may leave, and what a second
//! cancel answers.
//!
//! The state machine is one; each API surface (native, and each provider
//! dialect) hands the core its own policy instead of re-implementing cancel.
//! A policy can only *narrow or widen* the cancellable set among statuses
//! where cancelling is meaningful: `processing` and `paid` can never be
//! cancelled by any policy (a payment is in flight or money has moved).

use super::link::LinkStatus;

/// What happens when cancelling a link that is already cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlreadyCancelled {
    /// Answer success with the link as it is: first `cancelled_at` and
    /// reason kept, no new event (native, Payments).
    ReturnUnchanged,
    /// Refuse like any other non-cancellable status (Gale, Zelta, Plexy).
    Refuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelPolicy {
    /// May an expired link be cancelled (expired -> cancelled)? Zelta: yes.
    pub cancel_expired: bool,
    pub already_cancelled: AlreadyCancelled,
}

/// The policy's verdict for one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelDecision {
    Cancel,
    Unchanged,
    Refuse(CancelRefusal),
}

/// A cancel refused because of the link's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelRefusal {
    pub status: LinkStatus,
}

impl CancelRefusal {
    /// A sentence for the merchant saying why and what to do instead.
    pub fn message(self) -> &'static str {
        match self.status {
            LinkStatus::Processing => {
                "A payment is in progress on this link; retry the cancel in a few seconds, once the attempt resolves."
            }
            LinkStatus::Paid => {
                "This payment link has been paid; refund it instead (POST /v1/payment-links/{id}/refunds)."
            }
            LinkStatus::Expired => "This payment link has already expired.",
            LinkStatus::Cancelled => "This payment link has already been cancelled.",
            LinkStatus::Active => "This payment link cannot be cancelled.",
        }
    }
}

impl CancelPolicy {
    /// DESIGN.md §2: active cancels, a second cancel is a no-op 200,
    /// processing, paid and expired are refused.
    pub const NATIVE: CancelPolicy = CancelPolicy {
        cancel_expired: false,
        already_cancelled: AlreadyCancelled::ReturnUnchanged,
    };

    pub fn decide(&self, status: LinkStatus) -> CancelDecision {
        let refuse = CancelDecision::Refuse(CancelRefusal { status });
        match status {
            LinkStatus::Active => CancelDecision::Cancel,
            LinkStatus::Expired if self.cancel_expired => CancelDecision::Cancel,
            LinkStatus::Expired => refuse,
            LinkStatus::Cancelled => match self.already_cancelled {
                AlreadyCancelled::ReturnUnchanged => CancelDecision::Unchanged,
                AlreadyCancelled::Refuse => refuse,
            },
            LinkStatus::Processing | LinkStatus::Paid => refuse,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_policy_is_the_design_table() {
        let p = CancelPolicy::NATIVE;
        assert_eq!(p.decide(LinkStatus::Active), CancelDecision::Cancel);
        assert_eq!(p.decide(LinkStatus::Cancelled), CancelDecision::Unchanged);
        for status in [
            LinkStatus::Processing,
            LinkStatus::Paid,
            LinkStatus::Expired,
        ] {
            assert_eq!(
                p.decide(status),
                CancelDecision::Refuse(CancelRefusal { status })
            );
        }
    }

    #[test]
    fn no_policy_cancels_a_paid_or_processing_link() {
        let widest = CancelPolicy {
            cancel_expired: true,
            already_cancelled: AlreadyCancelled::ReturnUnchanged,
        };
        assert_eq!(widest.decide(LinkStatus::Expired), CancelDecision::Cancel);
        assert!(matches!(
            widest.decide(LinkStatus::Paid),
            CancelDecision::Refuse(_)
        ));
        assert!(matches!(
            widest.decide(LinkStatus::Processing),
            CancelDecision::Refuse(_)
        ));
    }
}
