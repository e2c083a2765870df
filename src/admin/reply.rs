//! The admin API's one answer type.

/// A JSON answer (errors are `{"error": ...}`).
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body: serde_json::Value,
}

impl Reply {
    pub(super) fn ok(body: serde_json::Value) -> Reply {
        Reply { status: 200, body }
    }
    pub(super) fn error(status: u16, message: &str) -> Reply {
        Reply { status, body: serde_json::json!({ "error": message }) }
    }
}
