//! The replication slot each standby streams through, named after its member.

/// Prefix of every slot pgreplica manages.
pub const SLOT_PREFIX: &str = "pgreplica_";

/// The slot a member's standby streams through: `pgreplica_` + member, `-` → `_`.
/// Member names are DNS labels (`[a-z0-9-]`), so the result is a valid slot name.
pub fn slot_name_for(member: &str) -> String {
    format!("{SLOT_PREFIX}{}", member.replace('-', "_"))
}
