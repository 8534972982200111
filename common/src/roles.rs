//! Team roles and the permission table.
//!
//! This is the only place that says which role may do what. The server enforces it; the dashboard
//! reads it to hide controls a user could not use anyway.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A member's role in a team, from most to least powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
}

/// Something a caller may want to do inside a team.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// See the team, its members, its apps and the names (not values) of config vars; pull the
    /// team's images from the registry.
    Read,
    /// Create and change apps, and set their config vars.
    WriteApps,
    /// Read config var values.
    ReadConfigValues,
    /// Push images to the team's repositories in the registry (a push can deploy).
    PushImages,
    /// Delete apps.
    DeleteApps,
    /// Add, change and remove members below owner; read the audit log.
    ManageMembers,
    /// Grant or take away the owner role.
    ManageOwners,
    /// Read the audit log.
    ReadAudit,
    /// Change the team's own settings (how long its logs are kept).
    ManageTeam,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Member, Role::Viewer];

    /// Higher is more powerful. Used to cap a token's role at its creator's.
    pub fn rank(self) -> u8 {
        match self {
            Role::Owner => 3,
            Role::Admin => 2,
            Role::Member => 1,
            Role::Viewer => 0,
        }
    }

    /// The less powerful of two roles.
    pub fn min(self, other: Role) -> Role {
        if self.rank() <= other.rank() {
            self
        } else {
            other
        }
    }

    /// The permission table (mirrored in the README).
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match permission {
            Read => true,
            WriteApps | ReadConfigValues | PushImages => self.rank() >= Role::Member.rank(),
            DeleteApps | ManageMembers | ReadAudit | ManageTeam => {
                self.rank() >= Role::Admin.rank()
            }
            ManageOwners => self == Role::Owner,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected one of owner, admin, member, viewer")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    #[test]
    fn permission_table() {
        // (permission, owner, admin, member, viewer)
        let table = [
            (Read, true, true, true, true),
            (WriteApps, true, true, true, false),
            (ReadConfigValues, true, true, true, false),
            (PushImages, true, true, true, false),
            (DeleteApps, true, true, false, false),
            (ManageMembers, true, true, false, false),
            (ReadAudit, true, true, false, false),
            (ManageTeam, true, true, false, false),
            (ManageOwners, true, false, false, false),
        ];
        for (perm, owner, admin, member, viewer) in table {
            assert_eq!(Role::Owner.allows(perm), owner, "owner {perm:?}");
            assert_eq!(Role::Admin.allows(perm), admin, "admin {perm:?}");
            assert_eq!(Role::Member.allows(perm), member, "member {perm:?}");
            assert_eq!(Role::Viewer.allows(perm), viewer, "viewer {perm:?}");
        }
    }

    #[test]
    fn min_picks_less_powerful() {
        assert_eq!(Role::Owner.min(Role::Viewer), Role::Viewer);
        assert_eq!(Role::Member.min(Role::Admin), Role::Member);
        assert_eq!(Role::Admin.min(Role::Admin), Role::Admin);
    }

    #[test]
    fn parses_and_rejects() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().is_err());
        assert!("Owner".parse::<Role>().is_err());
    }
}
