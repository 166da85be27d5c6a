//! Payments: the hosted checkout's side of the state machine, processors' answers and webhooks, and the reconciler that finishes what a crash cut.

use super::*;

impl Service {
    /// The hosted page's payment. Claims the link (active -> processing,
    /// with the pending attempt, in one transaction, so concurrent submits
    /// and cancels cannot also win), calls the processor with no
    /// transaction open and the attempt id as idempotency key, then settles
    /// the attempt. The HTTP layer runs this where a disconnect cannot cut
    /// it; a crash is finished by [`Service::reconcile_payments`].
    pub async fn pay_link(&self, slug: &str, card: &Card) -> ServiceResult<PaymentResult> {
        self.pay_link_with(
            slug,
            PaymentSource::Card(card),
            Some(card.brand()),
            Some(card.last4()),
        )
        .await
    }

    /// [`Service::pay_link`] with any source the link's processor takes.
    #[tracing::instrument(skip_all)]
    pub async fn pay_link_with(
        &self,
        slug: &str,
        source: PaymentSource<'_>,
        card_brand: Option<&str>,
        card_last4: Option<&str>,
    ) -> ServiceResult<PaymentResult> {
        let link = self.get_link_by_slug(slug).await?;
        if self.account(&link.account_id).await?.suspended {
            return Err(ServiceError::AccountSuspended);
        }
        let processor = self
            .processor_for(&link.account_id, link.livemode)
            .await?
            .ok_or(ServiceError::PaymentsUnavailable)?;
        let (processing, attempt) = self
            .start_attempt(slug, processor.name(), card_brand, card_last4)
            .await?;
        match tokio::time::timeout(PROCESSOR_TIMEOUT, processor.charge(&attempt, source)).await {
            Ok(Ok(ChargeOutcome::RequiresAction { client_secret })) => {
                Ok(PaymentResult::ActionRequired {
                    link: processing,
                    attempt_id: attempt.id,
                    client_secret,
                })
            }
            Ok(Ok(outcome)) => self.settle_attempt(&attempt, &outcome).await,
            Ok(Err(error)) => {
                tracing::warn!(%error, attempt_id = %attempt.id, "processor call failed; the reconciler will ask again");
                Ok(PaymentResult::Processing(processing))
            }
            Err(_) => {
                tracing::warn!(attempt_id = %attempt.id, "processor did not answer in time; the reconciler will ask again");
                Ok(PaymentResult::Processing(processing))
            }
        }
    }

    /// The processor an account takes payments with in a mode: the one
    /// configured for it, else the built-in test processor in test mode,
    /// else none (a live link of such an account cannot be paid).
    pub async fn processor_for(
        &self,
        account_id: &str,
        livemode: bool,
    ) -> ServiceResult<Option<Arc<dyn PaymentProcessor>>> {
        match self.configured_processor(account_id, livemode).await? {
            Some(processor) => Ok(Some(processor)),
            None if !livemode => Ok(Some(Arc::clone(&self.test_processor))),
            None => Ok(None),
        }
    }

    /// The processor named `name` for an account and mode: what reconciles
    /// an attempt or refund made through it.
    pub(super) async fn processor_named(
        &self,
        account_id: &str,
        livemode: bool,
        name: &str,
    ) -> ServiceResult<Option<Arc<dyn PaymentProcessor>>> {
        if name == self.test_processor.name() {
            return Ok(Some(Arc::clone(&self.test_processor)));
        }
        Ok(self
            .configured_processor(account_id, livemode)
            .await?
            .filter(|processor| processor.name() == name))
    }

    pub(super) async fn configured_processor(
        &self,
        account_id: &str,
        livemode: bool,
    ) -> ServiceResult<Option<Arc<dyn PaymentProcessor>>> {
        let Some(configured) = self.store.processor_account(account_id, livemode).await? else {
            return Ok(None);
        };
        if configured.processor == self.test_processor.name() {
            return Ok(Some(Arc::clone(&self.test_processor)));
        }
        Ok(self.connectors.open(&configured, account_id, livemode)?)
    }

    pub async fn account(&self, account_id: &str) -> ServiceResult<Account> {
        self.store
            .get_account(account_id)
            .await?
            .ok_or(ServiceError::NotFound)
    }

    pub async fn account_name(&self, account_id: &str) -> ServiceResult<String> {
        Ok(self.account(account_id).await?.name)
    }

    /// active -> processing with a new pending attempt at `processor`.
    pub(super) async fn start_attempt(
        &self,
        slug: &str,
        processor: &str,
        card_brand: Option<&str>,
        card_last4: Option<&str>,
    ) -> ServiceResult<(Link, PaymentAttempt)> {
        let attempt_id = ids::new_attempt_id();
        let mut started = None;
        let link = self
            .change(&LinkKey::Slug(slug.to_owned()), None, |link, now| {
                let transition = link.begin_payment(
                    AttemptStart {
                        attempt_id: &attempt_id,
                        processor,
                        card_brand,
                        card_last4,
                    },
                    now,
                )?;
                started = transition.attempt.clone();
                Ok(Some(transition))
            })
            .await?;
        let attempt = started
            .ok_or_else(|| StoreError::Internal("a started payment has no attempt".into()))?;
        Ok((link, attempt))
    }

    /// Records the processor's `outcome` for the pending `attempt` (once:
    /// whoever settles first, the request or the reconciler, wins, and the
    /// other answers from what was recorded).
    #[tracing::instrument(skip_all)]
    pub async fn settle_attempt(
        &self,
        attempt: &PaymentAttempt,
        outcome: &ChargeOutcome,
    ) -> ServiceResult<PaymentResult> {
        let key = LinkKey::of(&attempt.account_id, attempt.livemode, &attempt.link_id);
        let refund_id = ids::new_refund_id();
        let settled = self
            .change(&key, None, |link, now| match outcome {
                // The processor took money for a link that no longer
                // takes it: record it and refund it, in one transaction.
                ChargeOutcome::Succeeded { payment_id }
                    if link.status != LinkStatus::Processing
                        || attempt.state == AttemptState::Failed =>
                {
                    Ok(Some(link.refund_late_payment(
                        attempt, payment_id, &refund_id, now,
                    )?))
                }
                _ => Ok(Some(link.settle_payment(attempt, outcome, now)?)),
            })
            .await;
        match (settled, outcome) {
            (Ok(link), ChargeOutcome::Succeeded { .. }) if link.status != LinkStatus::Paid => {
                tracing::warn!(attempt_id = %attempt.id, link_id = %link.id, status = link.status.as_str(), "a payment succeeded for a link that is no longer payable; refunding it");
                if let Some(refund) = self
                    .store
                    .link_refunds(&link.id)
                    .await?
                    .into_iter()
                    .find(|r| r.id == refund_id)
                {
                    self.run_refund(refund).await?;
                }
                Ok(PaymentResult::Declined {
                    message: format!(
                        "This payment link was {} before your payment completed; your payment is being refunded.",
                        link.status.as_str()
                    ),
                    link,
                })
            }
            (Ok(link), ChargeOutcome::Succeeded { .. }) => Ok(PaymentResult::Paid(link)),
            (Ok(_), ChargeOutcome::Declined { message }) => {
                // Back to active: reloading through `change` stores an
                // expiry that fell due while the payment was in progress.
                let link = self.change(&key, None, |_, _| Ok(None)).await?;
                Ok(PaymentResult::Declined {
                    link,
                    message: message.clone(),
                })
            }
            (Err(ServiceError::InvalidState { .. }), _) => {
                // Settled first by someone else (the reconciler, or the
                // request it raced): answer what was recorded.
                tracing::info!(attempt_id = %attempt.id, "payment attempt was settled by someone else");
                let link = self.change(&key, None, |_, _| Ok(None)).await?;
                let recorded = self.store.get_attempt(&attempt.id).await?;
                if let (Some(failed), ChargeOutcome::Succeeded { .. }) = (&recorded, outcome)
                    && failed.state == AttemptState::Failed
                {
                    // Closed as failed here, yet the processor took the
                    // money (a late 3-D Secure, say): give it back.
                    return Box::pin(self.settle_attempt(failed, outcome)).await;
                }
                Ok(match recorded {
                    Some(a) if a.state == AttemptState::Succeeded => PaymentResult::Paid(link),
                    Some(a) if a.state == AttemptState::Failed => PaymentResult::Declined {
                        link,
                        message: a.failure_message.unwrap_or_default(),
                    },
                    _ => PaymentResult::Processing(link),
                })
            }
            (Ok(link), ChargeOutcome::RequiresAction { .. }) => Ok(PaymentResult::Processing(link)),
            (Err(error), _) => Err(error),
        }
    }

    /// For a `processing` link whose payment waits for the customer to
    /// authenticate: the secret the page needs to show the challenge again.
    pub async fn pending_action(&self, link: &Link) -> ServiceResult<Option<String>> {
        let Some((attempt, processor)) = self.payment_held_by_processor(link).await? else {
            return Ok(None);
        };
        Ok(
            tokio::time::timeout(PROCESSOR_TIMEOUT, processor.pending_action(&attempt))
                .await
                .ok()
                .flatten(),
        )
    }

    /// The customer is back from authenticating (3-D Secure) on the page:
    /// asks the processor what became of the link's pending attempt and
    /// settles it if it has an outcome.
    #[tracing::instrument(skip_all)]
    pub async fn complete_pending_payment(&self, slug: &str) -> ServiceResult<PaymentResult> {
        let link = self.get_link_by_slug(slug).await?;
        let Some(attempt) = self
            .store
            .link_attempts(&link.id)
            .await?
            .into_iter()
            .find(|a| a.state == AttemptState::Pending)
        else {
            return Err(ServiceError::InvalidState {
                status: link.status,
                message: "No payment is in progress on this link.".into(),
            });
        };
        let Some(processor) = self
            .processor_named(&attempt.account_id, attempt.livemode, &attempt.processor)
            .await?
        else {
            return Ok(PaymentResult::Processing(link));
        };
        match tokio::time::timeout(PROCESSOR_TIMEOUT, processor.outcome(&attempt, self.now())).await
        {
            Ok(Ok(outcome)) => self.settle_attempt(&attempt, &outcome).await,
            Ok(Err(error)) => {
                tracing::info!(%error, attempt_id = %attempt.id, "payment has no outcome yet");
                Ok(PaymentResult::Processing(link))
            }
            Err(_) => Ok(PaymentResult::Processing(link)),
        }
    }

    /// A processor's webhook says what became of attempt `attempt_id`;
    /// settles it unless it is settled already (whichever of the
    /// synchronous answer and the webhook comes first wins).
    #[tracing::instrument(skip_all)]
    pub async fn apply_processor_outcome(
        &self,
        scope: &Scope,
        attempt_id: &str,
        outcome: &ChargeOutcome,
    ) -> ServiceResult<()> {
        let Some(attempt) = self
            .store
            .get_attempt(attempt_id)
            .await?
            .filter(|a| a.account_id == scope.account_id && a.livemode == scope.livemode)
        else {
            tracing::info!(
                attempt_id,
                "a processor event names no attempt of its account; ignored"
            );
            return Ok(());
        };
        let late_success = attempt.state == AttemptState::Failed
            && matches!(outcome, ChargeOutcome::Succeeded { .. });
        if attempt.state == AttemptState::Pending || late_success {
            self.settle_attempt(&attempt, outcome).await?;
        }
        Ok(())
    }

    /// A processor's webhook says payment `payment_id` was refunded: runs
    /// the pending refunds of the link it paid (each asks the processor).
    pub async fn refresh_refunds(&self, scope: &Scope, payment_id: &str) -> ServiceResult<()> {
        let filter = LinkFilter {
            payment_id: Some(payment_id.to_owned()),
            ..LinkFilter::default()
        };
        let page = Page {
            limit: 1,
            starting_after: None,
        };
        for link in self
            .store
            .list_links(scope, &filter, &page, self.now())
            .await?
        {
            for refund in self.store.link_refunds(&link.id).await? {
                if refund.state == RefundState::Pending {
                    self.run_refund(refund).await?;
                }
            }
        }
        Ok(())
    }

    /// Whether a processor event was handled already.
    pub async fn processor_event_seen(
        &self,
        processor: &str,
        event_id: &str,
    ) -> ServiceResult<bool> {
        Ok(self.store.processor_event_seen(processor, event_id).await?)
    }

    /// Notes a processor event as handled; false if it was handled before.
    pub async fn record_processor_event(
        &self,
        processor: &str,
        event_id: &str,
    ) -> ServiceResult<bool> {
        Ok(self
            .store
            .record_processor_event(processor, event_id, self.now())
            .await?)
    }

    /// Settles every attempt still pending `older_than` after it started,
    /// by asking its processor what became of it (an attempt the processor
    /// never saw is closed as failed). Returns how many it settled.
    #[tracing::instrument(skip_all)]
    pub async fn reconcile_payments(&self, older_than: SignedDuration) -> ServiceResult<usize> {
        let mut settled = 0;
        loop {
            let stale = self
                .store
                .pending_attempts(self.now() - older_than, RECONCILE_BATCH)
                .await?;
            let batch = stale.len();
            let mut progressed = 0;
            for attempt in stale {
                let Some(processor) = self
                    .processor_named(&attempt.account_id, attempt.livemode, &attempt.processor)
                    .await?
                else {
                    tracing::warn!(attempt_id = %attempt.id, processor = %attempt.processor, "no processor to reconcile this attempt with");
                    continue;
                };
                // A link whose time ran out while its payment waited for the
                // customer (3-D Secure) stops waiting: the payment is voided
                // at the processor (or found succeeded) and the expiry follows.
                let link_expired = self
                    .load(&LinkKey::of(
                        &attempt.account_id,
                        attempt.livemode,
                        &attempt.link_id,
                    ))
                    .await
                    .is_ok_and(|link| link.expires_at <= self.now());
                let asked = if link_expired && attempt.processor_reference.is_some() {
                    processor.void(&attempt).await
                } else {
                    processor.outcome(&attempt, self.now()).await
                };
                let outcome = match asked {
                    Ok(outcome) => outcome,
                    Err(crate::payments::ProcessorError::Pending(why)) => {
                        tracing::debug!(attempt_id = %attempt.id, %why, "payment has no outcome yet");
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%error, attempt_id = %attempt.id, "could not ask the processor; retrying next round");
                        continue;
                    }
                };
                self.settle_attempt(&attempt, &outcome).await?;
                tracing::info!(attempt_id = %attempt.id, "reconciled a stale payment attempt");
                progressed += 1;
            }
            settled += progressed;
            if batch < RECONCILE_BATCH || progressed == 0 {
                return Ok(settled);
            }
        }
    }

    /// What a restart must finish before serving: on a store this process
    /// owns alone, every idempotency claim left without an answer was cut
    /// by the previous run's death.
    pub async fn recover_after_start(&self) -> anyhow::Result<()> {
        let sealed = self.seal_endpoint_secrets().await?;
        if sealed > 0 {
            tracing::info!(
                sealed,
                "webhook endpoint secrets stored in clear are now sealed under PAYLINK_SECRETS_KEY"
            );
        }
        if self.settings.processors.secrets_key.is_none() {
            tracing::warn!(
                "PAYLINK_SECRETS_KEY is not set: webhook endpoint secrets are stored in clear and no processor can be configured ({})",
                crate::secrets::HOW_TO_MAKE_A_KEY
            );
        }
        if self.store.single_process() {
            let abandoned = self.store.abandon_idempotency_claims().await?;
            if abandoned > 0 {
                tracing::warn!(
                    abandoned,
                    "idempotency claims cut by the previous run are free for retries"
                );
            }
        }
        Ok(())
    }

    /// The key of the checkout's CSRF tokens, shared by every node (made
    /// on first use).
    pub async fn checkout_csrf_key(&self) -> ServiceResult<String> {
        Ok(self
            .store
            .server_secret("checkout_csrf", &ids::random_base62(43))
            .await?)
    }

    /// The link's payment attempts, oldest first.
    pub async fn link_attempts(&self, link_id: &str) -> ServiceResult<Vec<PaymentAttempt>> {
        Ok(self.store.link_attempts(link_id).await?)
    }

    /// Starts a test-processor attempt without a card (tests and tools
    /// drive the state machine this way); returns the processing link.
    #[tracing::instrument(skip_all)]
    pub async fn begin_payment(&self, slug: &str) -> ServiceResult<Link> {
        let processor = self.test_processor.name();
        Ok(self.start_attempt(slug, processor, None, None).await?.0)
    }

    /// Settles the link's pending attempt as paid, through the test
    /// processor's ledger.
    #[tracing::instrument(skip_all)]
    pub async fn complete_payment(&self, slug: &str) -> ServiceResult<Link> {
        let outcome = ChargeOutcome::Succeeded {
            payment_id: ids::new_payment_id(),
        };
        self.settle_pending(slug, outcome).await
    }

    /// Settles the link's pending attempt as declined with `message`.
    #[tracing::instrument(skip_all)]
    pub async fn fail_payment(&self, slug: &str, message: &str) -> ServiceResult<Link> {
        let outcome = ChargeOutcome::Declined {
            message: message.to_owned(),
        };
        self.settle_pending(slug, outcome).await
    }

    pub(super) async fn settle_pending(
        &self,
        slug: &str,
        outcome: ChargeOutcome,
    ) -> ServiceResult<Link> {
        // Through `change`, so a due expiry is stored first, as any write does.
        let link = self
            .change(&LinkKey::Slug(slug.to_owned()), None, |_, _| Ok(None))
            .await?;
        let attempt = self
            .store
            .link_attempts(&link.id)
            .await?
            .into_iter()
            .find(|a| a.state == AttemptState::Pending)
            .ok_or_else(|| ServiceError::InvalidState {
                status: link.status,
                message: "No payment is in progress on this link.".into(),
            })?;
        let outcome = serde_json::to_value(&outcome)
            .map_err(|error| StoreError::Internal(error.to_string()))?;
        let recorded = self
            .store
            .record_test_outcome(&attempt.id, outcome, self.now())
            .await?;
        let outcome: ChargeOutcome = serde_json::from_value(recorded)
            .map_err(|error| StoreError::Internal(error.to_string()))?;
        Ok(match self.settle_attempt(&attempt, &outcome).await? {
            PaymentResult::Paid(link)
            | PaymentResult::Declined { link, .. }
            | PaymentResult::Processing(link)
            | PaymentResult::ActionRequired { link, .. } => link,
        })
    }
}
