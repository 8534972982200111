//! The signed-in user and their teams, from `GET /api/v1/me`, shared by every page through
//! context.
//!
//! It is a plain signal rather than a resource so that login can store the fresh value *before*
//! navigating: pages that redirect on "not signed in" never see a stale answer. It starts empty
//! on the server and in the browser alike (so hydration matches) and loads after hydration.

use gantry_common::api::Me;
use gantry_common::{Permission, Role};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, ApiError};

#[derive(Clone, Copy)]
pub struct Session {
    me: RwSignal<Option<Result<Me, ApiError>>>,
}

impl Session {
    /// `None` until loaded.
    pub fn get(&self) -> Option<Result<Me, ApiError>> {
        self.me.get()
    }

    pub fn set(&self, me: Result<Me, ApiError>) {
        self.me.set(Some(me));
    }

    /// Fetches the user and teams again (after a membership change).
    pub fn reload(&self) {
        let me = self.me;
        spawn_local(async move { me.set(Some(api::me().await)) });
    }

    /// The caller's role in `team`, once loaded.
    pub fn role_in(&self, team: &str) -> Option<Role> {
        match self.get() {
            Some(Ok(me)) => me
                .teams
                .iter()
                .find(|t| t.team.slug.as_str() == team)
                .map(|t| t.role),
            _ => None,
        }
    }

    /// May the caller do `permission` in `team`? False until loaded.
    pub fn can(&self, team: &str, permission: Permission) -> bool {
        self.role_in(team).is_some_and(|r| r.allows(permission))
    }
}

pub fn provide() {
    let session = Session {
        me: RwSignal::new(None),
    };
    provide_context(session);
    // Effects run in the browser only, after hydration.
    Effect::new(move |_| session.reload());
}

pub fn use_session() -> Session {
    expect_context::<Session>()
}
