//! Links: create, read, list, update, cancel (one or in bulk), stats, events, expiry.

use super::*;

impl Service {
    #[tracing::instrument(skip_all, fields(account = %caller.scope.account_id))]
    pub async fn create_link(&self, caller: &Caller, new_link: NewLink) -> ServiceResult<Link> {
        let idempotency = current_idempotency();
        if let Some(link) = self.recalled(idempotency.as_ref()).await? {
            return Ok(link);
        }
        if caller.scope.livemode
            && self
                .store
                .processor_account(&caller.scope.account_id, true)
                .await?
                .is_none()
        {
            return Err(FieldError::new(
                "livemode",
                "This account has no processor for live payments, so a live link could not be paid. \
                 An operator connects one with `paylink accounts set-processor ACCOUNT --mode live --processor stripe \
                 --secret-key sk_live_... --publishable-key pk_live_... --webhook-secret whsec_...`.",
            )
            .into());
        }
        let (link, event) = new_link.create(Creation {
            account_id: &caller.scope.account_id,
            livemode: caller.scope.livemode,
            actor: caller.actor(),
            now: self.now(),
            default_lifetime: self.settings.default_link_lifetime,
        })?;
        let owed = self
            .store
            .insert_link(link.clone(), event, idempotency.map(|c| c.mark))
            .await?;
        crate::telemetry::link_transition(EventType::Created.as_str());
        self.wake_dispatcher_if(owed);
        Ok(link)
    }

    /// The link as the change an earlier run of this request committed
    /// left it (that run died before its answer was stored), if any.
    pub(super) async fn recalled(
        &self,
        idempotency: Option<&IdempotencyContext>,
    ) -> ServiceResult<Option<Link>> {
        let Some(event_id) = idempotency.and_then(|c| c.recall.as_deref()) else {
            return Ok(None);
        };
        let event =
            self.store.event_by_id(event_id).await?.ok_or_else(|| {
                StoreError::Internal(format!("recalled event {event_id} is missing"))
            })?;
        Ok(Some(event.link))
    }

    #[tracing::instrument(skip_all, fields(account = %caller.scope.account_id, link = %id))]
    pub async fn get_link(&self, caller: &Caller, id: &str) -> ServiceResult<Link> {
        let link = self
            .load(&LinkKey::Id(caller.scope.clone(), id.to_owned()))
            .await?;
        Ok(link.as_seen_at(self.now()))
    }

    pub async fn get_link_by_slug(&self, slug: &str) -> ServiceResult<Link> {
        let link = self.load(&LinkKey::Slug(slug.to_owned())).await?;
        Ok(link.as_seen_at(self.now()))
    }

    #[tracing::instrument(skip_all, fields(account = %caller.scope.account_id))]
    pub async fn list_links(
        &self,
        caller: &Caller,
        filter: &LinkFilter,
        limit: usize,
        starting_after: Option<&str>,
    ) -> ServiceResult<ListPage> {
        let cursor = match starting_after {
            Some(id) => {
                let link = self
                    .store
                    .get_link(&caller.scope, id)
                    .await?
                    .ok_or_else(|| {
                        FieldError::new(
                            "starting_after",
                            format!("No payment link `{id}` to start after."),
                        )
                    })?;
                Some((link.created_at, link.id))
            }
            None => None,
        };
        let now = self.now();
        let page = Page {
            limit: limit + 1,
            starting_after: cursor,
        };
        let mut links = self
            .store
            .list_links(&caller.scope, filter, &page, now)
            .await?;
        let has_more = links.len() > limit;
        links.truncate(limit);
        Ok(ListPage {
            links: links.into_iter().map(|link| link.as_seen_at(now)).collect(),
            has_more,
        })
    }

    #[tracing::instrument(skip_all, fields(account = %caller.scope.account_id, link = %id))]
    pub async fn update_link(
        &self,
        caller: &Caller,
        id: &str,
        update: LinkUpdate,
    ) -> ServiceResult<Link> {
        let actor = caller.actor();
        self.change(
            &LinkKey::Id(caller.scope.clone(), id.to_owned()),
            current_idempotency(),
            |link, now| {
                link.update(&update, actor.clone(), now)
                    .map_err(|error| match error {
                        UpdateError::Field(field) => ServiceError::Invalid(field),
                        UpdateError::State(conflict) => conflict.into(),
                    })
            },
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(account = %caller.scope.account_id, link = %id))]
    pub async fn cancel_link(
        &self,
        caller: &Caller,
        id: &str,
        reason: Option<String>,
        customer_message: Option<String>,
        policy: &CancelPolicy,
    ) -> ServiceResult<Link> {
        let reason = Reason::parse_optional(reason)?;
        let message = Reason::parse_field("customer_message", customer_message)?;
        let note = (reason, message);
        let idempotency = current_idempotency();
        match self
            .cancel_one(caller, id, note.clone(), policy, idempotency.clone())
            .await
        {
            // A payment attempt is in flight (the customer pressed Pay a
            // moment ago): wait, bounded, for it to resolve, then decide
            // from where it landed: paid is refused as paid, failed
            // leaves the link active and the cancel goes through. Every
            // surface answers the same way; one whose provider has no
            // word for "processing" never has to refuse a link it showed
            // as active with a status the client did not see.
            Err(ServiceError::InvalidState {
                status: LinkStatus::Processing,
                message,
            }) => {
                let key = LinkKey::Id(caller.scope.clone(), id.to_owned());
                if !self.await_settled_payment(&key).await? {
                    return Err(ServiceError::InvalidState {
                        status: LinkStatus::Processing,
                        message,
                    });
                }
                self.cancel_one(caller, id, note, policy, idempotency).await
            }
            decided => decided,
        }
    }

    /// Polls the link until it leaves `processing` (true) or
    /// [`PAYMENT_SETTLE_WAIT`] passes (false). Read-only: a client that
    /// hangs up meanwhile cuts nothing.
    async fn await_settled_payment(&self, key: &LinkKey) -> ServiceResult<bool> {
        let deadline = tokio::time::Instant::now() + PAYMENT_SETTLE_WAIT;
        loop {
            tokio::time::sleep(PAYMENT_SETTLE_POLL).await;
            if self.load(key).await?.status != LinkStatus::Processing {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }

    pub(super) async fn cancel_one(
        &self,
        caller: &Caller,
        id: &str,
        (reason, customer_message): (Option<Reason>, Option<Reason>),
        policy: &CancelPolicy,
        idempotency: Option<IdempotencyContext>,
    ) -> ServiceResult<Link> {
        let key = LinkKey::Id(caller.scope.clone(), id.to_owned());
        let actor = caller.actor();
        let cancel = |link: &Link, now| {
            Ok(link.cancel(
                policy,
                reason.clone(),
                customer_message.clone(),
                actor.clone(),
                now,
            )?)
        };
        match self.change(&key, idempotency.clone(), cancel).await {
            // Refused only because a payment is in flight: if the processor
            // holds it unconfirmed, void it and decide again.
            Err(ServiceError::InvalidState {
                status: LinkStatus::Processing,
                message,
            }) => {
                let link = self.load(&key).await?;
                if !self.void_pending_payment(&link).await? {
                    return Err(ServiceError::InvalidState {
                        status: LinkStatus::Processing,
                        message,
                    });
                }
                self.change(&key, idempotency, cancel).await
            }
            decided => decided,
        }
    }

    /// A cancel of a `processing` link whose payment the processor holds
    /// unconfirmed (a PaymentIntent waiting for 3-D Secure) first cancels
    /// that payment at the processor and settles the attempt, so the link
    /// is active again and the cancel can proceed; if the payment went
    /// through first, the link is paid and the cancel is refused. An
    /// attempt the processor has not made yet (no reference) is left to
    /// finish: the cancel answers 409 as before.
    /// Returns whether a payment was voided (and settled).
    pub(super) async fn void_pending_payment(&self, link: &Link) -> ServiceResult<bool> {
        let Some((attempt, processor)) = self.payment_held_by_processor(link).await? else {
            return Ok(false);
        };
        match tokio::time::timeout(PROCESSOR_TIMEOUT, processor.void(&attempt)).await {
            Ok(Ok(outcome)) => {
                tracing::info!(attempt_id = %attempt.id, ?outcome, "voided a pending payment before a cancel");
                self.settle_attempt(&attempt, &outcome).await?;
                Ok(true)
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, attempt_id = %attempt.id, "could not void a pending payment; the cancel waits for it");
                Ok(false)
            }
            Err(_) => {
                tracing::warn!(attempt_id = %attempt.id, "the processor did not answer a void in time");
                Ok(false)
            }
        }
    }

    /// The pending attempt of a `processing` link whose payment the
    /// processor has made (it has a reference), with that processor.
    pub(super) async fn payment_held_by_processor(
        &self,
        link: &Link,
    ) -> ServiceResult<Option<(PaymentAttempt, Arc<dyn PaymentProcessor>)>> {
        if link.status != LinkStatus::Processing {
            return Ok(None);
        }
        let Some(attempt) = self
            .store
            .link_attempts(&link.id)
            .await?
            .into_iter()
            .find(|a| a.state == AttemptState::Pending && a.processor_reference.is_some())
        else {
            return Ok(None);
        };
        Ok(self
            .processor_named(&attempt.account_id, attempt.livemode, &attempt.processor)
            .await?
            .map(|processor| (attempt, processor)))
    }

    /// Cancels (or with `dry_run`, reports what would be cancelled) up to
    /// `limit` links matching `filter`, newest first after `starting_after`.
    #[tracing::instrument(skip_all, fields(account = %caller.scope.account_id))]
    pub async fn bulk_cancel(
        &self,
        caller: &Caller,
        filter: &LinkFilter,
        limit: usize,
        starting_after: Option<&str>,
        reason: Option<String>,
        dry_run: bool,
    ) -> ServiceResult<(Vec<BulkCancelItem>, bool)> {
        let reason = Reason::parse_optional(reason)?;
        let page = self
            .list_links(caller, filter, limit.min(MAX_BULK_CANCEL), starting_after)
            .await?;
        let policy = CancelPolicy::NATIVE;
        let items = futures::stream::iter(page.links)
            .map(|link| {
                let reason = reason.clone();
                async move {
                    if dry_run {
                        let outcome = match policy.decide(link.status) {
                            CancelDecision::Cancel => BulkOutcome::WouldCancel,
                            CancelDecision::Unchanged => BulkOutcome::AlreadyCancelled,
                            CancelDecision::Refuse(refusal) => BulkOutcome::Refused(refusal),
                        };
                        return BulkCancelItem { link, outcome };
                    }
                    let was_cancelled = link.status == LinkStatus::Cancelled;
                    // Not under the request's idempotency key: a bulk
                    // cancel makes many changes, and a rerun after a crash
                    // finds the cancelled ones already cancelled.
                    match self
                        .cancel_one(caller, &link.id, (reason, None), &policy, None)
                        .await
                    {
                        Ok(after) if was_cancelled || after.version == link.version => {
                            BulkCancelItem {
                                link: after,
                                outcome: BulkOutcome::AlreadyCancelled,
                            }
                        }
                        Ok(after) => BulkCancelItem {
                            link: after,
                            outcome: BulkOutcome::Cancelled,
                        },
                        Err(ServiceError::InvalidState { status, .. }) => BulkCancelItem {
                            link: Link { status, ..link },
                            outcome: BulkOutcome::Refused(CancelRefusal { status }),
                        },
                        Err(error) => BulkCancelItem {
                            link,
                            outcome: BulkOutcome::Failed(error.to_string()),
                        },
                    }
                }
            })
            .buffered(BULK_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        Ok((items, page.has_more))
    }

    #[tracing::instrument(skip_all, fields(account = %caller.scope.account_id))]
    pub async fn stats(
        &self,
        caller: &Caller,
        filter: &LinkFilter,
    ) -> ServiceResult<Vec<StatsRow>> {
        Ok(self.store.stats(&caller.scope, filter, self.now()).await?)
    }

    #[tracing::instrument(skip_all, fields(account = %caller.scope.account_id, link = %id))]
    pub async fn link_events(&self, caller: &Caller, id: &str) -> ServiceResult<Vec<LinkEvent>> {
        let link = self
            .load(&LinkKey::Id(caller.scope.clone(), id.to_owned()))
            .await?;
        Ok(self.store.link_events(&link.id).await?)
    }

    /// Stores the expiry of up to `limit` due links; returns how many this
    /// call expired (links another writer got to first are not counted).
    #[tracing::instrument(skip_all)]
    pub async fn expire_due_links(&self, limit: usize) -> ServiceResult<usize> {
        let expired = self.store.expire_due(self.now(), limit).await?;
        crate::telemetry::link_transitions(EventType::Expired.as_str(), expired);
        if expired > 0 {
            self.deliveries_waiting.notify_one();
        }
        Ok(expired)
    }
}
