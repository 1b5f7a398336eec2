//! The request log: every HTTP request a listener receives, recorded before it is answered,
//! so a test can assert on what the proxy sent even when the answer never comes.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Notify;

use crate::state::lock;

/// One HTTP request as the server received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The HTTP method (`POST`, `GET`, `DELETE`, …).
    pub method: String,
    /// The request path, without the query.
    pub path: String,
    /// The query string, when the request had one.
    pub query: Option<String>,
    /// Every header in arrival order, names lowercased; values that are not UTF-8 are
    /// converted lossily. Tests check `Mcp-Session-Id`, `MCP-Protocol-Version`,
    /// `Authorization`, `Accept`, `Last-Event-ID` and the absence of `Origin` here.
    pub headers: Vec<(String, String)>,
    /// The body, exactly as received.
    pub body: Vec<u8>,
    /// The status the server answered with; `None` while the answer is still being made
    /// (for example a JSON-mode call to the `never` tool).
    pub status: Option<u16>,
    /// When the request arrived, so a test can measure reconnect delays (checklist B17).
    pub received_at: Instant,
}

impl Recorded {
    /// The first value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The JSON-RPC `method` of the body; for a batch, that of its first message that has
    /// one. `None` for responses, GETs and non-JSON bodies.
    pub fn rpc_method(&self) -> Option<String> {
        let body = self.json()?;
        let method_of = |m: &Value| m.get("method").and_then(Value::as_str).map(str::to_owned);
        match &body {
            Value::Array(batch) => batch.iter().find_map(method_of),
            single => method_of(single),
        }
    }

    /// The JSON-RPC `id` of a single-message body (request or response).
    pub fn rpc_id(&self) -> Option<Value> {
        self.json()?.get("id").cloned()
    }
}

/// An append-only list of [`Recorded`] requests with a wake-up for waiters.
#[derive(Default)]
pub(crate) struct RequestLog {
    /// The requests, in arrival order.
    entries: Mutex<Vec<Recorded>>,
    /// Woken on every change, so [`RequestLog::wait_for`] does not have to spin.
    changed: Notify,
}

impl RequestLog {
    /// Appends a request and returns its index, for [`RequestLog::set_status`].
    pub(crate) fn push(&self, request: Recorded) -> usize {
        let index = {
            let mut entries = lock(&self.entries);
            entries.push(request);
            entries.len() - 1
        };
        self.changed.notify_waiters();
        index
    }

    /// Records the status the request at `index` was answered with. A no-op when the log was
    /// cleared in between.
    pub(crate) fn set_status(&self, index: usize, status: u16) {
        if let Some(entry) = lock(&self.entries).get_mut(index) {
            entry.status = Some(status);
        }
        self.changed.notify_waiters();
    }

    /// A copy of every entry.
    pub(crate) fn snapshot(&self) -> Vec<Recorded> {
        lock(&self.entries).clone()
    }

    /// Forgets every entry.
    pub(crate) fn clear(&self) {
        lock(&self.entries).clear();
    }

    /// Waits until `pred` holds for the log or `timeout` passes, re-checking on every change
    /// and at least every 50 ms.
    pub(crate) async fn wait_for(
        &self,
        pred: impl Fn(&[Recorded]) -> bool,
        timeout: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register for the wake-up before checking, so a change between the check and
            // the wait is not missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if pred(&lock(&self.entries)) {
                return true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return false;
            }
            let recheck = deadline.min(now + Duration::from_millis(50));
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(recheck) => {}
            }
        }
    }
}
