//! Raw ceiling for dynamodb: a conditional `UpdateItem` of one small item
//! (`SET v = :next` if `v = :prev`), one call at a time per loop, `workers` loops each on its own
//! item, in the table the store URL names. Every state change of the store is one such
//! conditional write of a (bigger) task item, or a `TransactWriteItems` of it and a counter, and a
//! claim adds a `Query`; so this is the most the server can do for one conditional write.
//!
//! On moto (single-threaded) the ceiling is moto's own CPU: one request at a time.

use anyhow::{Context, Result, bail};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::types::AttributeValue;
use std::time::Instant;

/// Ops/s of the conditional-update loop, `ops` calls spread over `workers` loops.
pub async fn measure(url: &str, workers: usize, ops: usize) -> Result<f64> {
    let Target {
        table,
        endpoint,
        region,
        profile,
    } = parse(url)?;
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = region {
        loader = loader.region(Region::new(r));
    }
    if let Some(e) = endpoint {
        loader = loader.endpoint_url(e);
    }
    let client = aws_sdk_dynamodb::Client::new(&loader.load().await);
    let workers = workers.max(1);
    let per_worker = ops.div_ceil(workers);
    let key = |w: usize| {
        [
            ("pk".to_owned(), AttributeValue::S("bench:ceiling".into())),
            ("sk".to_owned(), AttributeValue::S(format!("w{w}"))),
        ]
        .into_iter()
        .collect::<std::collections::HashMap<_, _>>()
    };
    for w in 0..workers {
        let mut item = key(w);
        item.insert("v".into(), AttributeValue::N("0".into()));
        client
            .put_item()
            .table_name(&table)
            .set_item(Some(item))
            .send()
            .await
            .with_context(|| format!("writing the ceiling item into DynamoDB table {table} (does it exist? the store's init creates it)"))?;
    }
    let started = Instant::now();
    let loops: Vec<_> = (0..workers)
        .map(|w| {
            let (client, table, key) = (client.clone(), table.clone(), key(w));
            tokio::spawn(async move {
                for i in 0..per_worker {
                    client
                        .update_item()
                        .table_name(&table)
                        .set_key(Some(key.clone()))
                        .update_expression("SET v = :next")
                        .condition_expression("v = :prev")
                        .expression_attribute_values(":prev", AttributeValue::N(i.to_string()))
                        .expression_attribute_values(
                            ":next",
                            AttributeValue::N((i + 1).to_string()),
                        )
                        .send()
                        .await
                        .context("conditional UpdateItem")?;
                }
                Ok::<usize, anyhow::Error>(per_worker)
            })
        })
        .collect();
    let rate = super::rate_since(started, loops).await?;
    for w in 0..workers {
        client
            .delete_item()
            .table_name(&table)
            .set_key(Some(key(w)))
            .send()
            .await?;
    }
    Ok(rate)
}

/// Where the ceiling loop runs.
struct Target {
    table: String,
    endpoint: Option<String>,
    region: Option<String>,
    profile: Option<String>,
}

/// `dynamodb://table?endpoint=…&region=…&profile=…` → its parts (other parameters are the store's).
fn parse(url: &str) -> Result<Target> {
    let Some(rest) = url.strip_prefix("dynamodb://") else {
        bail!("not a dynamodb:// URL: {url}")
    };
    let (table, query) = rest.split_once('?').unwrap_or((rest, ""));
    let table = table.trim_end_matches('/').to_owned();
    let (mut endpoint, mut region, mut profile) = (None, None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("endpoint", v)) => endpoint = Some(v.to_owned()),
            Some(("region", v)) => region = Some(v.to_owned()),
            Some(("profile", v)) => profile = Some(v.to_owned()),
            _ => {}
        }
    }
    Ok(Target {
        table,
        endpoint,
        region,
        profile,
    })
}
