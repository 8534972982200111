//! Live streams in the browser: a websocket to one of the server's `…/stream` endpoints, kept
//! open for as long as the page shows it. The browser sends the session cookie and the page's
//! `Origin` itself; the server checks both.

use leptos::prelude::*;

/// Keeps a websocket open to `path` (`/api/v1/…/stream?…`) on this server: opened again when
/// `path` changes, closed when the page goes or `path` becomes empty. Each text frame goes to `on_text`; a close (with
/// its code and reason) to `on_close`. The server renders pages without it.
#[cfg(not(feature = "hydrate"))]
pub fn follow(
    _path: Signal<String>,
    _on_text: impl Fn(String) + Clone + 'static,
    _on_close: impl Fn(u16, String) + Clone + 'static,
) {
}

#[cfg(feature = "hydrate")]
pub fn follow(
    path: Signal<String>,
    on_text: impl Fn(String) + Clone + 'static,
    on_close: impl Fn(u16, String) + Clone + 'static,
) {
    // One copy of the socket code in the wasm for every page that follows a stream (it has a
    // size budget): the handlers go in as trait objects.
    follow_dyn(path, std::rc::Rc::new(on_text), std::rc::Rc::new(on_close));
}

#[cfg(feature = "hydrate")]
fn follow_dyn(
    path: Signal<String>,
    on_text: std::rc::Rc<dyn Fn(String)>,
    on_close: std::rc::Rc<dyn Fn(u16, String)>,
) {
    use wasm_bindgen::prelude::*;
    use web_sys::{CloseEvent, MessageEvent, WebSocket};

    /// A socket and its handlers; dropping it closes the socket.
    struct Open {
        ws: WebSocket,
        _on_message: Closure<dyn FnMut(MessageEvent)>,
        _on_close: Closure<dyn FnMut(CloseEvent)>,
    }
    impl Drop for Open {
        fn drop(&mut self) {
            self.ws.set_onmessage(None);
            self.ws.set_onclose(None);
            let _ = self.ws.close();
        }
    }

    let current = StoredValue::new_local(None::<Open>);
    Effect::new(move |_| {
        let path = path.get();
        current.set_value(None);
        if path.is_empty() {
            return;
        }
        let Some(location) = web_sys::window().map(|w| w.location()) else {
            return;
        };
        let scheme = match location.protocol().as_deref() {
            Ok("https:") => "wss",
            _ => "ws",
        };
        let host = location.host().unwrap_or_default();
        let Ok(ws) = WebSocket::new(&format!("{scheme}://{host}{path}")) else {
            on_close(0, "the browser refused to open the stream".into());
            return;
        };
        let text = on_text.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if let Some(t) = e.data().as_string() {
                text(t);
            }
        });
        let closed = on_close.clone();
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
            closed(e.code(), e.reason());
        });
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        current.set_value(Some(Open {
            ws,
            _on_message: on_message,
            _on_close: on_close,
        }));
    });
    on_cleanup(move || current.set_value(None));
}
