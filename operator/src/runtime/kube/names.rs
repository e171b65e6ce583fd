//! Names of a cluster's Kubernetes objects, and the fixed names and paths inside a member pod.
//!
//! The controller, the pod builder and the agent's configuration must agree on every one of these,
//! so they live here and nowhere else.

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "pgreplica-operator";

/// PostgreSQL's port, in the pod and on every Service.
pub const POSTGRES_PORT: i32 = 5432;
pub const POSTGRES_PORT_NAME: &str = "postgres";
/// The agent's HTTP port (`/status`, `/healthz`, `/readyz`, `PUT /desired`).
pub const AGENT_PORT: i32 = 8008;
pub const AGENT_PORT_NAME: &str = "agent";

/// The key holding the password in both password Secrets.
pub const PASSWORD_KEY: &str = "password";

/// Member pod and volume claim: `<cluster>-<member>`.
pub fn member_object(cluster: &str, member: &str) -> String {
    format!("{cluster}-{member}")
}

/// The member a pod or volume claim named `<cluster>-<member>` belongs to.
pub fn member_of_object<'a>(cluster: &str, object: &'a str) -> Option<&'a str> {
    object
        .strip_prefix(cluster)
        .and_then(|rest| rest.strip_prefix('-'))
        .filter(|member| !member.is_empty())
}

/// Service selecting the primary (read-write).
pub fn rw_service(cluster: &str) -> String {
    format!("{cluster}-rw")
}

/// Service selecting the standbys (read-only).
pub fn ro_service(cluster: &str) -> String {
    format!("{cluster}-ro")
}

/// Service selecting every ready member (reads that may land on the primary).
pub fn r_service(cluster: &str) -> String {
    format!("{cluster}-r")
}

/// Secret with the superuser's password.
pub fn superuser_secret(cluster: &str) -> String {
    format!("{cluster}-superuser")
}

/// Secret with the replication user's password.
pub fn replication_secret(cluster: &str) -> String {
    format!("{cluster}-replication")
}

/// Secret with the cluster CA's certificate only (`ca.crt`): what applications use for
/// `sslmode=verify-full`.
pub fn ca_secret(cluster: &str) -> String {
    format!("{cluster}-ca")
}

/// Secret with the cluster CA's certificate and private key: read by the operator only.
pub fn ca_key_secret(cluster: &str) -> String {
    format!("{cluster}-ca-key")
}

/// Secret with a member's certificate, key and the CA certificate, mounted in its pod.
pub fn member_tls_secret(cluster: &str, member: &str) -> String {
    format!("{cluster}-{member}-tls")
}

/// Secret with the application's credentials (user, password, host, port, dbname, uri,
/// jdbc-uri), for applications to mount.
pub fn app_secret(cluster: &str) -> String {
    format!("{cluster}-app")
}

/// NetworkPolicy over the cluster's pods.
pub fn network_policy(cluster: &str) -> String {
    cluster.to_string()
}

/// The one-writer Lease.
pub fn primary_lease(cluster: &str) -> String {
    format!("{cluster}-primary")
}

/// ServiceAccount, Role and RoleBinding of the member agents.
pub fn agent_account(cluster: &str) -> String {
    format!("{cluster}-agent")
}

/// PodDisruptionBudget over the cluster's pods.
pub fn disruption_budget(cluster: &str) -> String {
    cluster.to_string()
}

/// The operator image's own binary, run by the init container.
pub const OPERATOR_BINARY: &str = "/pgreplica";
/// The emptyDir the init container copies the binary into, mounted in both containers.
pub const AGENT_BIN_DIR: &str = "/pgreplica-bin";
/// The agent binary as the postgres container runs it.
pub const AGENT_BINARY: &str = "/pgreplica-bin/pgreplica";
/// Environment variable holding the agent's JSON configuration.
pub const AGENT_CONFIG_ENV: &str = "PGREPLICA_AGENT_CONFIG";
/// Downward-API environment variables of the postgres container.
pub const POD_IP_ENV: &str = "POD_IP";
pub const POD_NAME_ENV: &str = "POD_NAME";
pub const POD_NAMESPACE_ENV: &str = "POD_NAMESPACE";
/// Where the member's volume is mounted: the agent's `memberDir` (data lives in `data/`).
pub const MEMBER_DIR: &str = "/var/lib/pgreplica";
/// Where the password Secrets are mounted, and the files the agent reads.
pub const SUPERUSER_SECRET_DIR: &str = "/etc/pgreplica/superuser";
pub const REPLICATION_SECRET_DIR: &str = "/etc/pgreplica/replication";
pub const SUPERUSER_PASSWORD_FILE: &str = "/etc/pgreplica/superuser/password";
pub const REPLICATION_PASSWORD_FILE: &str = "/etc/pgreplica/replication/password";
/// The operator's namespace when it cannot tell (manifests/ installs it here).
pub const OPERATOR_NAMESPACE: &str = "pgreplica-system";
pub const APP_SECRET_DIR: &str = "/etc/pgreplica/app";
pub const APP_PASSWORD_FILE: &str = "/etc/pgreplica/app/password";
/// Where a member's TLS Secret is mounted (`ca.crt`, `tls.crt`, `tls.key`).
pub const TLS_DIR: &str = "/etc/pgreplica/tls";
/// Keys inside the TLS Secrets.
pub const CA_CERT_KEY: &str = "ca.crt";
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";

/// The key a cluster is known by in the operator's memory: its UID (a cluster deleted and created
/// again under the same name is another cluster), else namespace/name.
pub fn cluster_key(cluster: &crate::api::PgReplicaCluster, namespace: &str) -> String {
    cluster.metadata.uid.clone().unwrap_or_else(|| {
        format!(
            "{namespace}/{}",
            cluster.metadata.name.as_deref().unwrap_or_default()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_table() {
        let table = [
            (member_object("lab", "a"), "lab-a"),
            (member_object("shop", "delayed-5m"), "shop-delayed-5m"),
            (rw_service("lab"), "lab-rw"),
            (ro_service("lab"), "lab-ro"),
            (r_service("lab"), "lab-r"),
            (superuser_secret("lab"), "lab-superuser"),
            (replication_secret("lab"), "lab-replication"),
            (primary_lease("lab"), "lab-primary"),
            (ca_secret("lab"), "lab-ca"),
            (ca_key_secret("lab"), "lab-ca-key"),
            (member_tls_secret("lab", "a"), "lab-a-tls"),
            (app_secret("lab"), "lab-app"),
            (network_policy("lab"), "lab"),
            (agent_account("lab"), "lab-agent"),
            (disruption_budget("lab"), "lab"),
        ];
        for (got, want) in table {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn member_of_object_inverts_member_object() {
        let table = [
            ("lab", "lab-a", Some("a")),
            ("shop", "shop-delayed-5m", Some("delayed-5m")),
            ("lab", "lab-", None),
            ("lab", "lab", None),
            ("lab", "labx-a", None),
            ("lab", "other-a", None),
        ];
        for (cluster, object, want) in table {
            assert_eq!(member_of_object(cluster, object), want, "{object}");
        }
        assert_eq!(
            member_of_object("lab", &member_object("lab", "b")),
            Some("b")
        );
    }

    #[test]
    fn password_files_are_the_key_inside_the_mounted_secrets() {
        assert_eq!(
            SUPERUSER_PASSWORD_FILE,
            format!("{SUPERUSER_SECRET_DIR}/{PASSWORD_KEY}")
        );
        assert_eq!(
            REPLICATION_PASSWORD_FILE,
            format!("{REPLICATION_SECRET_DIR}/{PASSWORD_KEY}")
        );
        assert_eq!(AGENT_BINARY, format!("{AGENT_BIN_DIR}/pgreplica"));
        assert_eq!(
            APP_PASSWORD_FILE,
            format!("{APP_SECRET_DIR}/{PASSWORD_KEY}")
        );
        let files = crate::tls::AgentTlsFiles::in_dir(std::path::Path::new(TLS_DIR));
        assert_eq!(files.ca, std::path::Path::new(TLS_DIR).join(CA_CERT_KEY));
        assert_eq!(files.cert, std::path::Path::new(TLS_DIR).join(TLS_CERT_KEY));
        assert_eq!(files.key, std::path::Path::new(TLS_DIR).join(TLS_KEY_KEY));
    }
}
