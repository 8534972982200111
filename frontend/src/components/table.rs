//! A read-only table of plain text cells, one state column shown as a badge, with its loading,
//! error and empty states. Deliberately not generic (rows are strings, the fetch a boxed future):
//! every page that lists things this way shares one copy of the code in the wasm, which has a
//! size budget.

use std::future::Future;
use std::pin::Pin;

use leptos::prelude::*;

use super::{EmptyState, ErrorBox, Loading};
use crate::api::ApiResult;

/// The rows' cells, in the order of the headings.
pub type Rows = Vec<Vec<String>>;
pub type RowsFuture = Pin<Box<dyn Future<Output = ApiResult<Rows>>>>;

/// Loads the rows after hydration and again on `refetch`.
pub fn rows_resource(fetch: Box<dyn Fn() -> RowsFuture>) -> LocalResource<ApiResult<Rows>> {
    LocalResource::new(fetch)
}

/// What an empty table shows instead: a title, a sentence, and the command to run.
pub struct Empty {
    pub title: &'static str,
    pub text: &'static str,
    pub code: String,
}

/// Controls in a last column: the view for row `i` (e.g. a button), or nothing.
pub type Action<'a> = &'a dyn Fn(usize) -> Option<AnyView>;

/// `badge` is the index of the column shown as a state badge (styled by its `data-s`).
/// `action`, when given, adds a last column of controls.
pub fn text_table(
    rows: Option<ApiResult<Rows>>,
    test: &'static str,
    heads: &'static [&'static str],
    badge: usize,
    empty: Empty,
    action: Option<Action>,
) -> AnyView {
    match rows {
        None => view! { <Loading/> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox message=Some(e.message)/> }.into_any(),
        Some(Ok(rows)) if rows.is_empty() => view! {
            <EmptyState title=empty.title>
                <p>{empty.text} " " <code>{empty.code.clone()}</code></p>
            </EmptyState>
        }
        .into_any(),
        Some(Ok(rows)) => view! {
            <table class="list" data-test=test>
                <thead><tr>
                    {heads.iter().map(|h| view! { <th scope="col">{*h}</th> }).collect_view()}
                    {action.map(|_| view! {
                        <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                    })}
                </tr></thead>
                <tbody>
                    {rows.into_iter().enumerate().map(|(row, cells)| view! {
                        <tr>
                            {cells.into_iter().enumerate().map(|(i, c)| {
                                let is_badge = i == badge;
                                let state = is_badge.then(|| c.clone());
                                view! {
                                    <td><span class=is_badge.then_some("badge")
                                        data-s=state>{c}</span></td>
                                }
                            }).collect_view()}
                            {action.map(|f| view! { <td class="act">{f(row)}</td> })}
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        }
        .into_any(),
    }
}

/// `1.3 MB`: sizes as `docker images` shows them (powers of 1000).
pub fn size_text(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.1} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}
