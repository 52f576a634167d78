//! The frontier's Lua scripts, one per operation (each after the shared
//! prelude: [`crate::store::script`]), by role.

use crate::store::script;
use redis::Script;

/// Every script of the frontier.
pub(super) struct Scripts {
    pub(super) leases: LeaseScripts,
    pub(super) sites: SiteScripts,
    pub(super) admission: AdmissionScripts,
    pub(super) runs: RunScripts,
}

/// The queues and their leases: push, pop, ack, retry, release, renew,
/// reclaim, count.
pub(super) struct LeaseScripts {
    pub(super) push: Script,
    pub(super) pop: Script,
    pub(super) count: Script,
    pub(super) ack: Script,
    pub(super) retry: Script,
    pub(super) release: Script,
    pub(super) renew: Script,
    pub(super) reclaim: Script,
}

/// Politeness outside a pop: the throttle, a site's Crawl-delay.
pub(super) struct SiteScripts {
    pub(super) throttle: Script,
    pub(super) crawl_delay: Script,
}

/// A page's links admitted once each, within the caps (and pushed).
pub(super) struct AdmissionScripts {
    pub(super) admit: Script,
    pub(super) admit_push: Script,
}

/// A crawl's runs: a new one begun, the open requests of each.
pub(super) struct RunScripts {
    pub(super) new_run: Script,
    pub(super) open: Script,
}

impl Scripts {
    pub(super) fn load() -> Scripts {
        Scripts {
            leases: LeaseScripts {
                push: script(include_str!("push.lua")),
                pop: script(include_str!("pop.lua")),
                count: script(include_str!("count.lua")),
                ack: script(include_str!("ack.lua")),
                retry: script(include_str!("retry.lua")),
                release: script(include_str!("release.lua")),
                renew: script(include_str!("renew.lua")),
                reclaim: script(include_str!("reclaim.lua")),
            },
            sites: SiteScripts {
                throttle: script(include_str!("throttle.lua")),
                crawl_delay: script(include_str!("crawl_delay.lua")),
            },
            admission: AdmissionScripts {
                admit: script(include_str!("admit.lua")),
                admit_push: script(include_str!("admit_push.lua")),
            },
            runs: RunScripts {
                new_run: script(include_str!("new_run.lua")),
                open: script(include_str!("open.lua")),
            },
        }
    }
}
