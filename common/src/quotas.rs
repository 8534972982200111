//! Team quotas: what a team's apps may reserve on the platform's nodes. Set per team by a
//! platform admin (`PUT /api/v1/teams/{team}/quota`); teams without their own limits get the
//! platform's defaults (the server's `GANTRY_TEAM_QUOTA_*` settings).

use serde::{Deserialize, Serialize};

/// The most a team's apps may reserve. Instances count while they are wanted: surge instances
/// of a rolling update, a canary's, a blue-green rollout's second set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct QuotaLimits {
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100000))]
    pub apps: u32,
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100000))]
    pub instances: u32,
    /// CPU reserved by the instances, in thousandths of a core.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100000000))]
    pub cpu_millis: u32,
    /// Memory reserved by the instances, in MiB.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 100000000))]
    pub memory_mib: u32,
}

impl QuotaLimits {
    /// The defaults: generous for a team's staging and small production apps.
    pub const DEFAULT: QuotaLimits = QuotaLimits {
        apps: 20,
        instances: 50,
        cpu_millis: 16_000,
        memory_mib: 32 * 1024,
    };

    pub fn validate(&self) -> Result<(), String> {
        if self.apps > 100_000 || self.instances > 100_000 {
            return Err("apps and instances must be between 0 and 100000".into());
        }
        if self.cpu_millis > 100_000_000 || self.memory_mib > 100_000_000 {
            return Err("cpu_millis and memory_mib must be between 0 and 100000000".into());
        }
        Ok(())
    }
}

/// What a team's apps reserve now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaUsage {
    pub apps: u32,
    pub instances: u32,
    pub cpu_millis: u64,
    pub memory_mib: u64,
}

/// `GET /api/v1/teams/{team}/quota`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Quota {
    pub limits: QuotaLimits,
    /// The team has its own limits (`false`: the platform's defaults apply).
    pub custom: bool,
    pub usage: QuotaUsage,
}

/// Instances to add, each reserving `cpu_millis` and `memory_mib`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserve {
    pub instances: u32,
    pub cpu_millis: u32,
    pub memory_mib: u32,
}

impl QuotaUsage {
    /// Whether `add` more instances fit within `limits`; if not, why, in words a person can act
    /// on (`team acme's quota: 52 of 50 instances`).
    pub fn fits(&self, limits: &QuotaLimits, add: Reserve) -> Result<(), String> {
        let n = u64::from(add.instances);
        let instances = u64::from(self.instances) + n;
        let cpu = self.cpu_millis + n * u64::from(add.cpu_millis);
        let memory = self.memory_mib + n * u64::from(add.memory_mib);
        if instances > u64::from(limits.instances) {
            return Err(format!("{instances} of {} instances", limits.instances));
        }
        if cpu > u64::from(limits.cpu_millis) {
            return Err(format!("{cpu} of {} CPU millicores", limits.cpu_millis));
        }
        if memory > u64::from(limits.memory_mib) {
            return Err(format!("{memory} of {} MiB of memory", limits.memory_mib));
        }
        Ok(())
    }

    /// The most instances of this size that still fit.
    pub fn room(&self, limits: &QuotaLimits, cpu_millis: u32, memory_mib: u32) -> u32 {
        // An instance that reserves none of a resource is not limited by it.
        let left = |limit: u64, used: u64, each: u64| {
            limit
                .saturating_sub(used)
                .checked_div(each)
                .unwrap_or(u64::MAX)
        };
        let by_instances = u64::from(limits.instances).saturating_sub(u64::from(self.instances));
        let by_cpu = left(
            u64::from(limits.cpu_millis),
            self.cpu_millis,
            u64::from(cpu_millis),
        );
        let by_memory = left(
            u64::from(limits.memory_mib),
            self.memory_mib,
            u64::from(memory_mib),
        );
        by_instances
            .min(by_cpu)
            .min(by_memory)
            .min(u64::from(u32::MAX)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: QuotaLimits = QuotaLimits {
        apps: 2,
        instances: 5,
        cpu_millis: 1_000,
        memory_mib: 1_024,
    };

    fn used(instances: u32, cpu_millis: u64, memory_mib: u64) -> QuotaUsage {
        QuotaUsage {
            apps: 1,
            instances,
            cpu_millis,
            memory_mib,
        }
    }

    fn add(instances: u32, cpu_millis: u32, memory_mib: u32) -> Reserve {
        Reserve {
            instances,
            cpu_millis,
            memory_mib,
        }
    }

    #[test]
    fn what_fits_and_why_not() {
        assert_eq!(used(3, 600, 300).fits(&LIMITS, add(2, 200, 100)), Ok(()));
        assert_eq!(
            used(4, 400, 300).fits(&LIMITS, add(2, 100, 100)),
            Err("6 of 5 instances".into())
        );
        assert_eq!(
            used(1, 900, 300).fits(&LIMITS, add(1, 200, 100)),
            Err("1100 of 1000 CPU millicores".into())
        );
        assert_eq!(
            used(1, 100, 1_000).fits(&LIMITS, add(1, 100, 100)),
            Err("1100 of 1024 MiB of memory".into())
        );
        // Over limits that were lowered, the excess shows even when adding nothing (callers
        // ask only when something grows).
        assert_eq!(
            used(9, 9_000, 9_000).fits(&LIMITS, add(0, 500, 500)),
            Err("9 of 5 instances".into())
        );
    }

    #[test]
    fn room_is_the_tightest_limit() {
        assert_eq!(used(1, 200, 100).room(&LIMITS, 100, 100), 4);
        assert_eq!(used(1, 200, 100).room(&LIMITS, 300, 100), 2);
        assert_eq!(used(1, 200, 1_000).room(&LIMITS, 100, 100), 0);
        assert_eq!(used(7, 0, 0).room(&LIMITS, 0, 0), 0);
    }
}
