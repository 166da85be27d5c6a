//! Refunds: reserved on the link before the processor is asked, finished by the reconciler.

use super::*;

impl Service {
    /// Refunds `amount` (default: what is left) of a paid link. The refund
    /// is reserved on the link first (so concurrent refunds never add up to
    /// more than the amount), then sent to the processor that took the
    /// payment with the refund id as idempotency key, then settled. A
    /// processor that does not answer leaves it pending for the reconciler.
    #[tracing::instrument(skip_all, fields(account = %caller.scope.account_id, link = %id))]
    pub async fn refund_link(
        &self,
        caller: &Caller,
        id: &str,
        amount: Option<i64>,
        reason: Option<String>,
    ) -> ServiceResult<RefundResult> {
        let idempotency = current_idempotency();
        if let Some(event_id) = idempotency.as_ref().and_then(|c| c.recall.as_deref()) {
            // An earlier run committed the reservation and died: finish
            // that refund, do not make another.
            let event = self.store.event_by_id(event_id).await?.ok_or_else(|| {
                StoreError::Internal(format!("recalled event {event_id} is missing"))
            })?;
            if let Some(refund) = event.refund {
                return self.finish_refund(refund).await;
            }
        }
        let key = LinkKey::Id(caller.scope.clone(), id.to_owned());
        let link = self.load(&key).await?;
        let processor = self
            .store
            .link_attempts(&link.id)
            .await?
            .into_iter()
            .find(|a| a.state == AttemptState::Succeeded && a.payment_id == link.payment_id)
            .map_or_else(|| self.test_processor.name().to_owned(), |a| a.processor);
        let refund_id = ids::new_refund_id();
        let actor = caller.actor();
        let mut reserved = None;
        self.change(&key, idempotency, |link, now| {
            let transition = link
                .begin_refund(
                    RefundStart {
                        refund_id: &refund_id,
                        amount,
                        reason: reason.clone(),
                        processor: &processor,
                        actor: actor.clone(),
                    },
                    now,
                )
                .map_err(|error| match error {
                    UpdateError::Field(field) => ServiceError::Invalid(field),
                    UpdateError::State(conflict) => conflict.into(),
                })?;
            reserved = transition.refund.clone();
            Ok(Some(transition))
        })
        .await?;
        let refund =
            reserved.ok_or_else(|| StoreError::Internal("a reserved refund is missing".into()))?;
        self.finish_refund(refund).await
    }

    /// Runs a reserved refund to its outcome, or leaves it pending if the
    /// processor cannot answer now; answers the link and refund after.
    pub(super) async fn finish_refund(&self, refund: Refund) -> ServiceResult<RefundResult> {
        let refund = if refund.state == RefundState::Pending {
            self.run_refund(refund).await?
        } else {
            refund
        };
        let link = self
            .load(&LinkKey::of(
                &refund.account_id,
                refund.livemode,
                &refund.link_id,
            ))
            .await?;
        let refund = self
            .store
            .link_refunds(&link.id)
            .await?
            .into_iter()
            .find(|r| r.id == refund.id)
            .unwrap_or(refund);
        Ok(RefundResult { link, refund })
    }

    /// Asks the refund's processor to make (or tell the outcome of) it and
    /// settles it; answers the refund as it now stands.
    pub(super) async fn run_refund(&self, refund: Refund) -> ServiceResult<Refund> {
        let Some(processor) = self
            .processor_named(&refund.account_id, refund.livemode, &refund.processor)
            .await?
        else {
            tracing::warn!(refund_id = %refund.id, processor = %refund.processor, "no processor to run this refund with; it stays pending");
            return Ok(refund);
        };
        let outcome = match tokio::time::timeout(PROCESSOR_TIMEOUT, processor.refund(&refund)).await
        {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(error)) => {
                tracing::warn!(%error, refund_id = %refund.id, "refund call failed; the reconciler will ask again");
                return Ok(refund);
            }
            Err(_) => {
                tracing::warn!(refund_id = %refund.id, "processor did not answer a refund in time; the reconciler will ask again");
                return Ok(refund);
            }
        };
        if refund.kind == RefundKind::LatePayment && matches!(outcome, RefundOutcome::Failed { .. })
        {
            // Money taken for a link that did not sell is never kept: the
            // reconciler keeps asking until the processor gives it back.
            tracing::error!(refund_id = %refund.id, ?outcome, "the automatic refund of a late payment failed; retrying later");
            return Ok(refund);
        }
        self.settle_refund(&refund, &outcome).await
    }

    /// Records the processor's `outcome` for a pending refund (once).
    #[tracing::instrument(skip_all)]
    pub async fn settle_refund(
        &self,
        refund: &Refund,
        outcome: &RefundOutcome,
    ) -> ServiceResult<Refund> {
        let key = LinkKey::of(&refund.account_id, refund.livemode, &refund.link_id);
        let now_settled = refund.settled(outcome, self.now());
        match self
            .change(&key, None, |link, now| {
                Ok(Some(link.settle_refund(refund, outcome, now)?))
            })
            .await
        {
            Ok(_) => Ok(now_settled),
            Err(ServiceError::InvalidState { .. }) => Ok(self
                .store
                .link_refunds(&refund.link_id)
                .await?
                .into_iter()
                .find(|r| r.id == refund.id)
                .unwrap_or(now_settled)),
            Err(error) => Err(error),
        }
    }

    #[tracing::instrument(skip_all, fields(account = %caller.scope.account_id, link = %id))]
    pub async fn link_refunds(&self, caller: &Caller, id: &str) -> ServiceResult<Vec<Refund>> {
        let link = self
            .load(&LinkKey::Id(caller.scope.clone(), id.to_owned()))
            .await?;
        Ok(self.store.link_refunds(&link.id).await?)
    }

    /// Runs every refund still pending `older_than` after it was made.
    #[tracing::instrument(skip_all)]
    pub async fn reconcile_refunds(&self, older_than: SignedDuration) -> ServiceResult<usize> {
        let stale = self
            .store
            .pending_refunds(self.now() - older_than, RECONCILE_BATCH)
            .await?;
        let mut settled = 0;
        for refund in stale {
            if self.run_refund(refund).await?.state != RefundState::Pending {
                settled += 1;
            }
        }
        Ok(settled)
    }
}
