//! `cachectl inspect`.

use std::process::ExitCode;

use cache_runtime::inspect::{self, KeyReport, Validity};
use clap::Args;
use serde_json::json;

use crate::format::{bytes, duration};
use crate::output::out;
use crate::{Cli, Failure, connect_routed, required_app};

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The key as stored (or give --entity and --id).
    #[arg(conflicts_with_all = ["entity", "id"], required_unless_present = "entity")]
    key: Option<String>,
    /// The entity, to build the key as the library does.
    #[arg(long, requires = "id")]
    entity: Option<String>,
    /// The id as the function received it (escaped here like a one-value key template).
    #[arg(long, requires = "entity")]
    id: Option<String>,
    /// The variant as rendered (`p2`).
    #[arg(long, requires = "entity")]
    variant: Option<String>,
    /// The entity's schema version (also CACHE_VERSION). Without it, the one version the
    /// entity has keys at; refused when it has keys at several, or none.
    #[arg(long, env = "CACHE_VERSION")]
    version: Option<u32>,
}

/// The key for `--entity`/`--id`/`--variant`: `{app}:v{N}:{entity}:{id}[:{variant}]`.
pub(crate) fn build_key(
    app: &str,
    version: u32,
    entity: &str,
    id: &str,
    variant: Option<&str>,
) -> Result<String, Failure> {
    cache_runtime::validate_name("app prefix", app)?;
    cache_runtime::validate_name("entity", entity)?;
    let mut key = format!("{app}:v{version}:{entity}:");
    cache_runtime::escape_into(&mut key, id);
    if let Some(variant) = variant {
        key.push(':');
        key.push_str(variant);
    }
    Ok(key)
}

pub(crate) async fn run(cli: &Cli, args: &InspectArgs) -> Result<ExitCode, Failure> {
    let key = match (&args.key, &args.entity, &args.id) {
        (Some(key), _, _) => key.clone(),
        (None, Some(entity), Some(id)) => {
            let app = required_app(cli)?;
            let version = crate::versions::resolve(cli, app, entity, args.version).await?;
            build_key(app, version, entity, id, args.variant.as_deref())?
        }
        _ => return Err(Failure("give a KEY, or --entity and --id".into())),
    };
    let mut conn = connect_routed(cli).await?;
    let report = inspect::inspect_key(&mut conn, &key).await?;
    if cli.json {
        out!("{:#}", to_json(&report));
    } else {
        print_human(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn validity(report: &KeyReport) -> (&'static str, String) {
    match &report.validity {
        Validity::Valid => ("valid", "a read serves it".to_owned()),
        Validity::Invalidated(why) => ("invalidated", why.clone()),
        Validity::Unknown(why) => ("unknown", why.clone()),
    }
}

fn to_json(report: &KeyReport) -> serde_json::Value {
    let (state, reason) = validity(report);
    let header = report.header.map(|h| {
        json!({
            "codec": h.codec, "compressed": h.compressed, "negative": h.negative,
            "created_at_ms": h.created_at_ms, "fresh_until_ms": h.fresh_until_ms,
            "cost_ms": h.cost_ms, "epoch": h.epoch, "id_token": h.id_token,
        })
    });
    let value = report
        .json
        .as_deref()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok());
    json!({
        "key": report.key, "exists": report.exists,
        "ttl_ms": report.ttl.map(|t| t.as_millis() as u64), "size": report.size,
        "header": header, "tags": report.tags, "format_error": report.format_error,
        "validity": state, "reason": reason,
        "stale_for_ms": report.stale_for().map(|d| d.as_millis() as u64),
        "value": value, "payload_preview_hex": report.payload_preview,
    })
}

fn print_human(report: &KeyReport) {
    out!("{:<10} {}", "key", report.key);
    if !report.exists {
        out!("{:<10} no such key", "exists");
        return;
    }
    let ttl = report
        .ttl
        .map_or("none (the cache always sets one)".to_owned(), duration);
    out!("{:<10} {ttl}", "ttl");
    out!("{:<10} {}", "size", bytes(report.size as u64));
    if let Some(error) = &report.format_error {
        out!("{:<10} not a cache value: {error}", "format");
    }
    if let Some(h) = report.header {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let ago = std::time::Duration::from_millis(now_ms.saturating_sub(h.created_at_ms));
        out!(
            "{:<10} {} ago (took {} ms to compute)",
            "created",
            duration(ago),
            h.cost_ms
        );
        match report.stale_for() {
            None => {
                let left = h.fresh_until_ms.saturating_sub(now_ms);
                out!(
                    "{:<10} fresh for {}",
                    "freshness",
                    duration(std::time::Duration::from_millis(left))
                );
            }
            Some(stale) => out!(
                "{:<10} stale for {} (served only with `stale`, while refreshing)",
                "freshness",
                duration(stale)
            ),
        }
        let codec = match h.codec {
            1 => "postcard",
            2 => "json",
            _ => "unknown",
        };
        out!(
            "{:<10} {codec}{}{}",
            "encoding",
            if h.compressed { ", lz4-compressed" } else { "" },
            if h.negative {
                ", records an absence (cache_none)"
            } else {
                ""
            }
        );
        if !report.tags.is_empty() {
            out!("{:<10} {}", "tags", report.tags.join(", "));
        }
    }
    let (state, reason) = validity(report);
    out!("{:<10} {state}: {reason}", "validity");
    if let Some(json) = &report.json {
        out!("{:<10} {json}", "value");
    } else if let Some(hex) = &report.payload_preview {
        out!(
            "{:<10} {hex}… (postcard is not self-describing: decode it with its type)",
            "payload"
        );
    }
}
