//! Idempotency keys as the HTTP layer claims, answers and releases them.

use super::*;

impl Service {
    pub async fn claim_idempotency_key(
        &self,
        caller: &Caller,
        key: &str,
        fingerprint: &str,
    ) -> ServiceResult<IdempotencyClaim> {
        let now = self.now();
        let window = IdempotencyWindow {
            now,
            expired_before: now - IDEMPOTENCY_KEY_LIFETIME,
            abandoned_before: now - IDEMPOTENCY_LEASE,
        };
        Ok(self
            .store
            .claim_idempotency_key(&caller.scope, key, fingerprint, window)
            .await?)
    }

    pub async fn complete_idempotency_key(
        &self,
        caller: &Caller,
        key: &str,
        response: StoredResponse,
    ) -> ServiceResult<()> {
        Ok(self
            .store
            .complete_idempotency_key(&caller.scope, key, response)
            .await?)
    }

    pub async fn release_idempotency_key(&self, caller: &Caller, key: &str) -> ServiceResult<()> {
        Ok(self
            .store
            .release_idempotency_key(&caller.scope, key)
            .await?)
    }

    /// Forgets idempotency keys older than their lifetime.
    /// Deletes finished webhook deliveries (and their attempts) older than
    /// `retention`, a batch at a time; events, the audit trail, stay.
    pub async fn purge_old_deliveries(&self, retention: SignedDuration) -> ServiceResult<usize> {
        const BATCH: usize = 1000;
        let before = self.now() - retention;
        let mut purged = 0;
        loop {
            let gone = self.store.purge_finished_deliveries(before, BATCH).await?;
            purged += gone;
            if gone < BATCH {
                return Ok(purged);
            }
        }
    }

    pub async fn purge_expired_idempotency_keys(&self) -> ServiceResult<u64> {
        Ok(self
            .store
            .purge_idempotency_keys(self.now() - IDEMPOTENCY_KEY_LIFETIME)
            .await?)
    }
}
