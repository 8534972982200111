use leptos::prelude::*;

use super::auth_form::{AuthForm, Kind};

#[component]
pub fn Signup() -> impl IntoView {
    view! { <AuthForm kind=Kind::Signup/> }
}
