//! The one-writer lease as a Kubernetes `coordination.k8s.io/v1` Lease (`<cluster>-primary`).
//!
//! Each call reads the Lease, applies the same [`LeaseRecord`] rules as every other store, and
//! writes back with `replace` carrying the `resourceVersion` it read (or `create` when there is no
//! Lease yet), so the API server refuses a write based on a stale read: optimistic concurrency.
//!
//! When a write loses (409 Conflict or AlreadyExists, or the Lease vanished), someone else changed
//! the Lease in between. The call reads once more and applies the rules to what is there now: if
//! another member took the lease, the honest answer is `false` and nothing is written; if the
//! change was harmless (a label, our own concurrent renewal) the rules say write, and it writes once
//! more. Losing that second write too is [`KubeLeaseError::Contended`], an error, so a holder keeps
//! its fencing deadline rather than fencing on a race it may well have won.

mod spec;
#[cfg(test)]
mod tests;

use ::kube::api::{Api, PostParams};
use k8s_openapi::api::coordination::v1::Lease as LeaseObject;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use thiserror::Error;
use tracing::{debug, info};

use super::{Lease, LeaseError, LeaseRecord};

pub use spec::{record_from_spec, spec_with_record};

const STORE: &str = "kubernetes";

/// What went wrong talking to the API server; the source of [`LeaseError::Store`].
#[derive(Debug, Error)]
pub enum KubeLeaseError {
    #[error("could not {action} Lease {name}: {source}")]
    Api {
        action: &'static str,
        name: String,
        #[source]
        source: ::kube::Error,
    },
    #[error("Lease {name} changed under two writes in a row; try again")]
    Contended { name: String },
    #[error("{ms} ms since the epoch cannot be written as a Lease time")]
    TimeOutOfRange { ms: u64 },
}

impl From<KubeLeaseError> for LeaseError {
    fn from(e: KubeLeaseError) -> LeaseError {
        LeaseError::Store {
            store: STORE,
            source: Box::new(e),
        }
    }
}

/// A [`Lease`] kept in one Kubernetes Lease object. Cheap to clone.
#[derive(Clone)]
pub struct KubeLease {
    api: Api<LeaseObject>,
    name: String,
    create_meta: ObjectMeta,
}

impl std::fmt::Debug for KubeLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeLease")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// How one read-modify-write ended.
enum Attempt<R> {
    Done(R),
    /// The write was refused because the Lease changed since it was read.
    Lost,
}

impl KubeLease {
    /// The Lease `name` in the namespace of `api` (use `Api::namespaced`).
    pub fn new(api: Api<LeaseObject>, name: impl Into<String>) -> KubeLease {
        KubeLease {
            api,
            name: name.into(),
            create_meta: ObjectMeta::default(),
        }
    }

    /// Labels and owner references for the Lease if this handle is the one to create it (usually
    /// the operator creates it first; see `runtime::kube::builders::primary_lease`). Name and
    /// namespace are this handle's.
    pub fn with_create_meta(mut self, meta: ObjectMeta) -> KubeLease {
        self.create_meta = meta;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn api_error(&self, action: &'static str) -> impl FnOnce(::kube::Error) -> KubeLeaseError {
        let name = self.name.clone();
        move |source| KubeLeaseError::Api {
            action,
            name,
            source,
        }
    }

    async fn get(&self) -> Result<Option<LeaseObject>, KubeLeaseError> {
        self.api
            .get_opt(&self.name)
            .await
            .map_err(self.api_error("read"))
    }

    /// Apply `change` to the stored record; `change` says whether to write it back. `now_ms` is
    /// the start of a new term if `change` starts one.
    async fn update<R, F>(&self, now_ms: Option<u64>, change: F) -> Result<R, LeaseError>
    where
        F: Fn(&mut LeaseRecord) -> Result<(R, bool), LeaseError> + Send + Sync,
        R: Send,
    {
        if let Attempt::Done(result) = self.attempt(now_ms, &change).await? {
            return Ok(result);
        }
        debug!(lease = %self.name, "lease changed while being written; reading it again");
        match self.attempt(now_ms, &change).await? {
            Attempt::Done(result) => Ok(result),
            Attempt::Lost => Err(KubeLeaseError::Contended {
                name: self.name.clone(),
            }
            .into()),
        }
    }

    async fn attempt<R, F>(&self, now_ms: Option<u64>, change: &F) -> Result<Attempt<R>, LeaseError>
    where
        F: Fn(&mut LeaseRecord) -> Result<(R, bool), LeaseError> + Send + Sync,
        R: Send,
    {
        let stored = self.get().await?;
        let before = record_from_spec(stored.as_ref().and_then(|l| l.spec.as_ref()));
        let mut after = before.clone();
        let (result, write) = change(&mut after)?;
        if !write || after == before {
            return Ok(Attempt::Done(result));
        }
        let new_term = after.transitions != before.transitions;
        let acquired_at = if new_term { now_ms } else { None };
        let written = match stored {
            Some(mut object) => {
                // The resourceVersion read above stays in the metadata: the precondition.
                object.spec = Some(spec_with_record(object.spec.take(), &after, acquired_at)?);
                self.api
                    .replace(&self.name, &PostParams::default(), &object)
                    .await
                    .map_err(self.api_error("replace"))
            }
            None => {
                let object = LeaseObject {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        resource_version: None,
                        ..self.create_meta.clone()
                    },
                    spec: Some(spec_with_record(None, &after, acquired_at)?),
                };
                self.api
                    .create(&PostParams::default(), &object)
                    .await
                    .map_err(self.api_error("create"))
            }
        };
        match written {
            Ok(_) => Ok(Attempt::Done(result)),
            Err(KubeLeaseError::Api {
                source: ::kube::Error::Api(status),
                ..
            }) if status.is_conflict() || status.is_already_exists() || status.is_not_found() => {
                Ok(Attempt::Lost)
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Lease for KubeLease {
    async fn read(&self) -> Result<LeaseRecord, LeaseError> {
        let stored = self.get().await?;
        Ok(record_from_spec(
            stored.as_ref().and_then(|l| l.spec.as_ref()),
        ))
    }

    async fn try_acquire(
        &self,
        who: &str,
        duration_ms: u64,
        now_ms: u64,
    ) -> Result<bool, LeaseError> {
        let held = self
            .update(Some(now_ms), |record| {
                let before = record.transitions;
                let held = record.acquire(who, duration_ms, now_ms)?;
                if record.transitions != before {
                    info!(lease = %self.name, holder = %who, term = record.transitions, duration_ms, "lease acquired");
                } else if !held {
                    debug!(lease = %self.name, wanted_by = %who, holder = ?record.holder, "lease held by another member");
                }
                Ok((held, held))
            })
            .await?;
        Ok(held)
    }

    async fn renew(&self, who: &str, now_ms: u64) -> Result<bool, LeaseError> {
        self.update(None, |record| {
            let renewed = record.renew(who, now_ms);
            if !renewed {
                info!(lease = %self.name, member = %who, holder = ?record.holder, "lease not renewed: not held by this member");
            }
            Ok((renewed, renewed))
        })
        .await
    }

    async fn release(&self, who: &str) -> Result<(), LeaseError> {
        self.update(None, |record| {
            let released = record.release(who);
            if released {
                info!(lease = %self.name, member = %who, "lease released");
            }
            Ok(((), released))
        })
        .await
    }
}
