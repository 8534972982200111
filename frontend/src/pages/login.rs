use leptos::prelude::*;

use super::auth_form::{AuthForm, Kind};

#[component]
pub fn Login() -> impl IntoView {
    view! { <AuthForm kind=Kind::Login/> }
}
