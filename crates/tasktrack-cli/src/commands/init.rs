//! `init`: the store is created or migrated by opening it; say where it is.

use super::Ctx;
use serde_json::json;
use tasktrack::{Result, redact_url};

/// Prints the store's URL (its password masked) and backend.
pub async fn init(ctx: &Ctx) -> Result<u8> {
    let url = redact_url(&ctx.url);
    let location = match ctx.url.split_once("://") {
        // An in-memory SQLite database, no file: not a path in the current directory.
        Some(("sqlite", path)) if path.split('?').next() == Some(":memory:") => {
            ":memory:".to_string()
        }
        Some(("sqlite", path)) => std::path::absolute(path.split('?').next().unwrap_or(path))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| path.to_string()),
        _ => url.clone(),
    };
    let doc = json!({ "store": url, "backend": ctx.store.backend(), "location": location });
    ctx.out.emit(&doc, || {
        format!(
            "store ready: {url} ({} backend) at {location}",
            ctx.store.backend()
        )
    })?;
    Ok(crate::exit::OK)
}
