//! `/teams/:team/members`: the team, its members and their roles. Owners and admins add people
//! by e-mail, change roles and remove members; others see the list only.

use gantry_common::api::{AddMember, Member, UpdateMember};
use gantry_common::{Email, Permission, Role};
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::param;
use crate::api;
use crate::components::{EmptyState, ErrorBox, Frame, Loading};
use crate::session::use_session;

/// Roles the caller may hand out: owners everything, admins up to admin.
fn grantable(caller: Option<Role>) -> Vec<Role> {
    Role::ALL
        .into_iter()
        .filter(|r| match caller {
            Some(c) if c.allows(Permission::ManageOwners) => true,
            Some(c) if c.allows(Permission::ManageMembers) => *r != Role::Owner,
            _ => false,
        })
        .collect()
}

#[component]
pub fn Members() -> impl IntoView {
    let team = param("team");
    let session = use_session();
    let members = LocalResource::new(move || {
        let team = team.get();
        async move { api::members(&team).await }
    });
    let error = RwSignal::new(None::<String>);
    let my_role = move || session.role_in(&team.get());
    let can_manage = move || my_role().is_some_and(|r| r.allows(Permission::ManageMembers));

    let change_role = move |user_id: String, role: Role| {
        error.set(None);
        spawn_local(async move {
            match api::update_member(&team.get_untracked(), &user_id, &UpdateMember { role }).await
            {
                Ok(_) => members.refetch(),
                Err(e) => {
                    error.set(Some(e.message));
                    members.refetch();
                }
            }
        });
    };
    let remove = move |user_id: String| {
        error.set(None);
        spawn_local(async move {
            match api::remove_member(&team.get_untracked(), &user_id).await {
                Ok(()) => {
                    members.refetch();
                    session.reload();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };

    let row = move |m: Member| {
        let id = m.user_id.to_string();
        let options = grantable(my_role());
        let manageable = can_manage() && (m.role != Role::Owner || options.contains(&Role::Owner));
        let role_cell = if manageable {
            let id = id.clone();
            view! {
                <select
                    aria-label=format!("Role of {}", m.email)
                    on:change=move |ev| {
                        if let Ok(role) = event_target_value(&ev).parse::<Role>() {
                            change_role(id.clone(), role);
                        }
                    }
                >
                    {options
                        .into_iter()
                        .map(|r| view! { <option value=r.as_str() selected=r == m.role>{r.as_str()}</option> })
                        .collect_view()}
                </select>
            }
            .into_any()
        } else {
            view! { <span class="role">{m.role.as_str()}</span> }.into_any()
        };
        view! {
            <tr>
                <td>{m.email.to_string()}</td>
                <td>{role_cell}</td>
                <td>
                    {manageable.then(|| {
                        let id = id.clone();
                        view! {
                            <button type="button" class="link danger" aria-label=format!("Remove {}", m.email)
                                on:click=move |_| remove(id.clone())>"Remove"</button>
                        }
                    })}
                </td>
            </tr>
        }
    };

    let list = move || {
        match members.get() {
        None => view! { <Loading/> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox message=Some(e.message)/> }.into_any(),
        Some(Ok(list)) if list.len() <= 1 => view! {
            {list.into_iter().map(row).collect_view()}
            <EmptyState title="Just you so far">
                <p>"Invite people who already have a Gantry account by their e-mail address."</p>
            </EmptyState>
        }
        .into_any(),
        Some(Ok(list)) => view! {
            <table class="list" data-test="members-table">
                <thead><tr><th scope="col">"Member"</th><th scope="col">"Role"</th><th scope="col"><span class="visually-hidden">"Actions"</span></th></tr></thead>
                <tbody>{list.into_iter().map(row).collect_view()}</tbody>
            </table>
        }
        .into_any(),
    }
    };

    view! {
        <Frame team>
            <h1>"Team " {move || team.get()}</h1>
            <p class="hint">{move || my_role().map(|r| format!("Your role: {r}")).unwrap_or_default()}</p>
            <Show when=can_manage>
                <AddMemberForm team roles=Signal::derive(move || grantable(my_role())) on_added=move || members.refetch()/>
            </Show>
            <ErrorBox message=error/>
            {list}
        </Frame>
    }
}

#[component]
fn AddMemberForm(
    team: Signal<String>,
    roles: Signal<Vec<Role>>,
    on_added: impl Fn() + Copy + 'static,
) -> impl IntoView {
    let email = RwSignal::new(String::new());
    let role = RwSignal::new(Role::Member);
    let error = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let email_value = match Email::parse(&email.get_untracked()) {
            Ok(e) => e,
            Err(e) => return error.set(Some(e.0)),
        };
        error.set(None);
        spawn_local(async move {
            let body = AddMember {
                email: email_value,
                role: role.get_untracked(),
            };
            match api::add_member(&team.get_untracked(), &body).await {
                Ok(_) => {
                    email.set(String::new());
                    on_added();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <form class="inline" on:submit=submit data-test="add-member">
            <label for="member-email">"Add by e-mail"</label>
            <input id="member-email" type="email" autocomplete="off" placeholder="colleague@example.com"
                prop:value=move || email.get() on:input=move |ev| email.set(event_target_value(&ev))/>
            <label for="member-role">"Role"</label>
            <select id="member-role" on:change=move |ev| {
                if let Ok(r) = event_target_value(&ev).parse::<Role>() { role.set(r) }
            }>
                {move || roles.get().into_iter().map(|r| view! {
                    <option value=r.as_str() selected=move || role.get() == r>{r.as_str()}</option>
                }).collect_view()}
            </select>
            <button type="submit" class="primary">"Add member"</button>
            <ErrorBox message=error/>
        </form>
    }
}
