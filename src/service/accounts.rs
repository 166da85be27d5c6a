//! Accounts and their keys, authentication, and the processor each account uses.

use super::*;

impl Service {
    pub async fn create_api_key(
        &self,
        account_name: &str,
        livemode: bool,
    ) -> ServiceResult<IssuedKey> {
        let name = account_name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(
                FieldError::new("account", "An account name is 1 to 100 characters.").into(),
            );
        }
        let now = self.now();
        let account = self
            .store
            .ensure_account(Account {
                id: ids::new_account_id(),
                name: name.to_owned(),
                suspended: false,
                created_at: now,
                branding: Branding::default(),
            })
            .await?;
        let secret = ids::new_api_key_secret(livemode);
        let record = ApiKeyRecord {
            id: ids::new_api_key_id(),
            account_id: account.id.clone(),
            livemode,
            key_hash: hash_api_key(&secret),
            key_prefix: secret.chars().take(12).collect(),
            created_at: now,
            expires_at: None,
            last_used_at: None,
        };
        self.store.insert_api_key(record.clone()).await?;
        Ok(IssuedKey {
            secret,
            record,
            account,
        })
    }

    /// How the hosted pages present the account's business: each field
    /// given replaces the stored one (an empty value clears it), the others
    /// are kept.
    pub async fn set_branding(
        &self,
        account_name: &str,
        change: Branding,
    ) -> anyhow::Result<Branding> {
        let account = self
            .store
            .account_by_name(account_name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no account named `{account_name}`"))?;
        let merge = |given: Option<String>, kept: Option<String>| match given {
            Some(text) if text.trim().is_empty() => None,
            Some(text) => Some(text.trim().to_owned()),
            None => kept,
        };
        let current = account.branding;
        let branding = Branding {
            display_name: merge(change.display_name, current.display_name),
            support_email: merge(change.support_email, current.support_email),
            logo_url: merge(change.logo_url, current.logo_url),
            terms_url: merge(change.terms_url, current.terms_url),
            privacy_url: merge(change.privacy_url, current.privacy_url),
        };
        branding
            .validate()
            .map_err(|error| anyhow::anyhow!("{}: {}", error.param, error.message))?;
        self.store
            .set_account_branding(account_name, &branding)
            .await?;
        Ok(branding)
    }

    /// An account's keys, oldest first.
    pub async fn list_api_keys(&self, account_name: &str) -> anyhow::Result<Vec<ApiKeyRecord>> {
        let account = self
            .store
            .account_by_name(account_name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no account named `{account_name}`"))?;
        Ok(self.store.list_api_keys(&account.id).await?)
    }

    /// Refuses the key from now on: on this node from its next request,
    /// on every other within a second (see `key_cache`).
    pub async fn revoke_api_key(&self, key_id: &str) -> anyhow::Result<()> {
        let found = self.store.expire_api_key(key_id, self.now()).await?;
        self.keys.clear();
        if !found {
            anyhow::bail!("no API key `{key_id}`");
        }
        Ok(())
    }

    /// A new key for the same account and mode; the old one keeps working
    /// for `grace` (zero: it stops now), so a deploy can switch without a
    /// failed request.
    pub async fn roll_api_key(
        &self,
        key_id: &str,
        grace: SignedDuration,
    ) -> anyhow::Result<(IssuedKey, Timestamp)> {
        let (old, account) = self
            .store
            .get_api_key(key_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no API key `{key_id}`"))?;
        let now = self.now();
        if old.is_expired(now) {
            anyhow::bail!("the API key `{key_id}` is already revoked or expired");
        }
        let issued = self.create_api_key(&account.name, old.livemode).await?;
        let old_expires_at = now + grace;
        self.store.expire_api_key(key_id, old_expires_at).await?;
        self.keys.clear();
        Ok((issued, old_expires_at))
    }

    /// On a database with no account yet, creates `default` with one test
    /// key and returns it, so a newcomer can call the API at once.
    pub async fn bootstrap(&self) -> ServiceResult<Option<IssuedKey>> {
        if self.store.count_accounts().await? > 0 {
            return Ok(None);
        }
        Ok(Some(self.create_api_key("default", false).await?))
    }

    #[tracing::instrument(skip_all)]
    pub async fn set_account_suspended(&self, name: &str, suspended: bool) -> ServiceResult<()> {
        let found = self.store.set_account_suspended(name, suspended).await?;
        self.keys.clear();
        if found {
            Ok(())
        } else {
            Err(ServiceError::NotFound)
        }
    }

    pub async fn authenticate(&self, secret: &str) -> ServiceResult<Caller> {
        if !(secret.starts_with("pl_test_") || secret.starts_with("pl_live_")) {
            return Err(ServiceError::Unauthorized(
                "The API key is not a paylink key (pl_test_... or pl_live_...).",
            ));
        }
        let key_hash = hash_api_key(secret);
        // At most a second old (see `key_cache`): a revoke or a
        // suspension holds on every node within a second.
        let CachedKey { key, account } = match self.keys.get(&key_hash) {
            Some(cached) => cached,
            None => {
                let read_at = std::time::Instant::now();
                let (key, account) = self
                    .store
                    .find_api_key(&key_hash)
                    .await?
                    .ok_or(ServiceError::Unauthorized("The API key is not valid."))?;
                let cached = CachedKey { key, account };
                self.keys.insert(cached.clone(), read_at);
                cached
            }
        };
        let now = self.now();
        if key.is_expired(now) {
            return Err(ServiceError::Unauthorized(
                "The API key has been revoked or has expired.",
            ));
        }
        if account.suspended {
            return Err(ServiceError::AccountSuspended);
        }
        if key
            .last_used_at
            .is_none_or(|at| now.duration_since(at) >= LAST_USED_RESOLUTION)
        {
            // Best effort, off the request's path: losing one is harmless.
            self.keys.used(&key_hash, now);
            let store = self.store.clone();
            let id = key.id.clone();
            tokio::spawn(async move {
                if let Err(error) = store.touch_api_key(&id, now).await {
                    tracing::debug!(%error, key_id = %id, "could not record a key's last use");
                }
            });
        }
        Ok(Caller {
            scope: Scope {
                account_id: account.id,
                livemode: key.livemode,
            },
            key_id: key.id,
            account_name: account.name,
        })
    }

    /// Sets the processor an account takes payments with in a mode. Stripe
    /// secrets are sealed under `PAYLINK_SECRETS_KEY` (refused without it).
    #[tracing::instrument(skip_all)]
    pub async fn set_processor(
        &self,
        account_name: &str,
        livemode: bool,
        choice: ProcessorChoice,
    ) -> anyhow::Result<()> {
        let account = self
            .store
            .account_by_name(account_name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no account named `{account_name}`"))?;
        let configured = match choice {
            ProcessorChoice::Test if livemode => {
                anyhow::bail!("the built-in test processor takes test-mode payments only")
            }
            ProcessorChoice::Test => None,
            ProcessorChoice::Stripe(config) => {
                let checks = [
                    ("--secret-key", &config.secret_key, &["sk_", "rk_"][..]),
                    ("--publishable-key", &config.publishable_key, &["pk_"][..]),
                    ("--webhook-secret", &config.webhook_secret, &["whsec_"][..]),
                ];
                for (flag, value, prefixes) in checks {
                    if !prefixes.iter().any(|p| value.starts_with(p)) {
                        anyhow::bail!("{flag} must start with {}", prefixes.join(" or "));
                    }
                }
                let expected_mode = if livemode { "_live_" } else { "_test_" };
                if !config.secret_key.contains(expected_mode)
                    || !config.publishable_key.contains(expected_mode)
                {
                    anyhow::bail!(
                        "the Stripe keys must be {} keys for {} mode",
                        expected_mode.trim_matches('_'),
                        if livemode { "live" } else { "test" }
                    );
                }
                let plain = serde_json::to_vec(&config)?;
                let sealed = self.connectors.seal(&plain, &account.id, livemode)?;
                Some(crate::store::ProcessorAccount {
                    processor: "stripe".into(),
                    sealed_config: sealed,
                    updated_at: self.now(),
                })
            }
        };
        self.store
            .set_processor_account(&account.id, livemode, configured)
            .await?;
        Ok(())
    }

    /// How the hosted page of `link` takes its payment.
    pub async fn checkout_processor(&self, link: &Link) -> ServiceResult<CheckoutProcessor> {
        let Some(configured) = self
            .store
            .processor_account(&link.account_id, link.livemode)
            .await?
        else {
            return Ok(if link.livemode {
                CheckoutProcessor::Unavailable
            } else {
                CheckoutProcessor::TestCard
            });
        };
        match configured.processor.as_str() {
            "stripe" => {
                let config =
                    self.connectors
                        .stripe_config(&configured, &link.account_id, link.livemode)?;
                Ok(CheckoutProcessor::Stripe {
                    publishable_key: config.publishable_key,
                    js_url: self.connectors.settings().stripe_js_url.clone(),
                })
            }
            _ => Ok(CheckoutProcessor::Unavailable),
        }
    }

    /// The Stripe configuration of an account (by name) in a mode, for
    /// verifying its webhooks; the account id with it.
    pub async fn stripe_account(
        &self,
        account_name: &str,
    ) -> ServiceResult<Vec<(String, bool, crate::payments::stripe::StripeConfig)>> {
        let account = self
            .store
            .account_by_name(account_name)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let mut configs = Vec::new();
        for livemode in [false, true] {
            if let Some(configured) = self.store.processor_account(&account.id, livemode).await?
                && configured.processor == "stripe"
            {
                configs.push((
                    account.id.clone(),
                    livemode,
                    self.connectors
                        .stripe_config(&configured, &account.id, livemode)?,
                ));
            }
        }
        Ok(configs)
    }
}
