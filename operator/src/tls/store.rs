//! Certificates kept in files: the local runtime's CA under `<cluster dir>/tls/`, and each member's
//! certificate in `members/<m>/tls/`, all mode 0600. Kubernetes keeps the same in Secrets.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use serde::{Deserialize, Serialize};
use tracing::info;

use super::renewal::verdict;
use super::{
    agent_name, brain_name, client_config, Authority, CertFacts, TlsError, Usage, Verdict,
    CA_VALIDITY, LEAF_VALIDITY,
};
use crate::postgres::{write_private_file, RunAs};

/// Where an agent finds its TLS material: the CA, its certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentTlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl AgentTlsFiles {
    /// The usual file names inside `dir`.
    pub fn in_dir(dir: &Path) -> AgentTlsFiles {
        AgentTlsFiles {
            ca: dir.join("ca.crt"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }
    }
}

/// The local runtime's CA and what it issues.
#[derive(Debug, Clone)]
pub struct LocalTls {
    cluster: String,
    authority: Authority,
    validity: Duration,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> TlsError + 'a {
    move |source| TlsError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn write(path: &Path, contents: &str, owner: Option<RunAs>) -> Result<(), TlsError> {
    write_private_file(path, contents.as_bytes(), owner).map_err(|e| TlsError::Io {
        what: "write",
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}

fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl LocalTls {
    /// The CA in `dir` (`ca.crt`, `ca.key`), created when neither file exists. A CA that exists
    /// but cannot be read is an error, never silently replaced: the certificates in use chain to it.
    pub fn open(dir: &Path, cluster: &str) -> Result<LocalTls, TlsError> {
        let (cert_path, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
        let authority = if cert_path.exists() || key_path.exists() {
            let cert = std::fs::read_to_string(&cert_path).map_err(io("read", &cert_path))?;
            let key = std::fs::read_to_string(&key_path).map_err(io("read", &key_path))?;
            Authority::from_pem(&cert, &key).map_err(|e| {
                TlsError::Config(format!(
                    "{} and {} are not a usable CA ({e}); restore them from a backup, or move the directory aside to create a new CA (members then get new certificates)",
                    cert_path.display(),
                    key_path.display()
                ))
            })?
        } else {
            std::fs::create_dir_all(dir).map_err(io("create", dir))?;
            let authority = Authority::generate(cluster, CA_VALIDITY)?;
            write(&key_path, authority.key_pem(), None)?;
            write(&cert_path, authority.cert_pem(), None)?;
            info!(cluster, dir = %dir.display(), "created the cluster CA");
            authority
        };
        Ok(LocalTls {
            cluster: cluster.to_string(),
            authority,
            validity: LEAF_VALIDITY,
        })
    }

    /// Issue certificates valid for `validity` instead of the default (tests of renewal).
    pub fn with_validity(mut self, validity: Duration) -> LocalTls {
        self.validity = validity;
        self
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The names in `member`'s certificate: its identity, and loopback for PostgreSQL clients.
    pub fn member_names(&self, member: &str) -> Vec<String> {
        vec![
            agent_name(&self.cluster, member),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ]
    }

    /// Make sure `dir` holds a current certificate for `member` (issued again when missing, from
    /// another CA, for other names or a third from expiry), readable by `owner` (PostgreSQL's
    /// user). Returns the files and whether they were (re)written.
    pub fn ensure_member(
        &self,
        dir: &Path,
        member: &str,
        owner: Option<RunAs>,
    ) -> Result<(AgentTlsFiles, bool), TlsError> {
        let files = AgentTlsFiles::in_dir(dir);
        let names = self.member_names(member);
        let cert = std::fs::read_to_string(&files.cert).ok();
        let key = std::fs::read_to_string(&files.key).ok();
        // a renewal cut short (new key, old certificate) is not a usable pair: issue again
        let facts = match (&cert, &key) {
            (Some(cert), Some(key)) if pair_usable(self.authority.cert_pem(), cert, key) => {
                CertFacts::read(cert, &self.authority).ok()
            }
            _ => None,
        };
        let ca_current =
            std::fs::read_to_string(&files.ca).is_ok_and(|pem| pem == self.authority.cert_pem());
        let why = match verdict(facts.as_ref(), &names, now_secs()) {
            Verdict::Keep if ca_current => return Ok((files, false)),
            Verdict::Keep => "the CA file is not the cluster CA".to_string(),
            Verdict::Renew(why) => why,
        };
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        if let Some(owner) = owner {
            nix::unistd::chown(
                dir,
                Some(nix::unistd::Uid::from_raw(owner.uid)),
                Some(nix::unistd::Gid::from_raw(owner.gid)),
            )
            .map_err(|e| io("chown", dir)(std::io::Error::from(e)))?;
        }
        let issued = self.authority.issue(&names, Usage::Server, self.validity)?;
        // Key first: a reader that sees the new certificate finds its key already in place.
        write(&files.key, &issued.key_pem, owner)?;
        write(&files.cert, &issued.cert_pem, owner)?;
        write(&files.ca, self.authority.cert_pem(), owner)?;
        info!(cluster = %self.cluster, member, reason = %why, "issued the member's certificate");
        Ok((files, true))
    }

    /// A client configuration carrying a fresh brain certificate, and when to make the next one.
    pub fn brain_client(&self) -> Result<(Arc<ClientConfig>, Duration), TlsError> {
        brain_client(&self.authority, &self.cluster, self.validity)
    }
}

/// Whether `cert` and `key` make a working server identity under the CA.
pub fn pair_usable(ca_pem: &str, cert: &str, key: &str) -> bool {
    super::server_config(ca_pem, cert, key).is_ok()
}

/// A fresh brain certificate from `authority` in a client configuration, and how long until it
/// should be replaced (two thirds of its validity).
pub fn brain_client(
    authority: &Authority,
    cluster: &str,
    validity: Duration,
) -> Result<(Arc<ClientConfig>, Duration), TlsError> {
    let issued = authority.issue(&[brain_name(cluster)], Usage::Client, validity)?;
    let config = client_config(authority.cert_pem(), &issued.cert_pem, &issued.key_pem)?;
    Ok((config, validity * 2 / 3))
}
