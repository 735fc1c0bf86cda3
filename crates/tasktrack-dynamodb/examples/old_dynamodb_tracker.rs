//! The baseline the DynamoDB backend replaces, re-enacted on the same emulator: a tracker that
//! keeps tasks in a table with a status index, and for each task Queries the index for a pending
//! one, reads it, checks its lock in memory, writes it back as started *unconditionally*, and
//! writes it back as done (4 requests per task). It is fast and wrong: two workers that read the
//! same pending task both "win". This measures its throughput and counts double executions, so
//! the benchmark doc can put ours beside it, measured in the same minute on the same machine.
//!
//! ```text
//! cargo run --release -p tasktrack-dynamodb --example old_dynamodb_tracker -- \
//!     http://127.0.0.1:PORT 1000 8
//! ```

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let endpoint = args
        .get(1)
        .ok_or("usage: old_dynamodb_tracker ENDPOINT [TASKS] [WORKERS]")?;
    let tasks: usize = args.get(2).map_or(Ok(1000), |a| a.parse())?;
    let workers: usize = args.get(3).map_or(Ok(8), |a| a.parse())?;
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .load()
        .await;
    let client = Client::new(&config);
    let table = format!("old-tracker-{}", std::process::id());
    let key = |n: &str, k: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(k)
            .build()
    };
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("id", KeyType::Hash)?)
        .attribute_definitions(attr("id")?)
        .attribute_definitions(attr("status")?)
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("status_index")
                .key_schema(key("status", KeyType::Hash)?)
                .key_schema(key("id", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()?,
        )
        .send()
        .await?;
    for i in 0..tasks {
        let item = HashMap::from([
            ("id".to_owned(), s(&format!("t{i:05}"))),
            ("status".to_owned(), s("pending")),
        ]);
        client
            .put_item()
            .table_name(&table)
            .set_item(Some(item))
            .send()
            .await?;
    }

    let runs = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (client, table, runs, requests) = (
                client.clone(),
                table.clone(),
                runs.clone(),
                requests.clone(),
            );
            tokio::spawn(async move {
                loop {
                    // 1. find a pending task on the status index
                    requests.fetch_add(1, Ordering::Relaxed);
                    let page = client
                        .query()
                        .table_name(&table)
                        .index_name("status_index")
                        .key_condition_expression("#s = :p")
                        .expression_attribute_names("#s", "status")
                        .expression_attribute_values(":p", s("pending"))
                        .limit(1)
                        .send()
                        .await?;
                    let Some(id) = page.items().first().and_then(|i| i.get("id")).cloned() else {
                        return Res::Ok(());
                    };
                    // 2. read it and check its lock in memory
                    requests.fetch_add(1, Ordering::Relaxed);
                    let item = client
                        .get_item()
                        .table_name(&table)
                        .key("id", id.clone())
                        .send()
                        .await?;
                    if item.item().and_then(|i| i.get("status")) != Some(&s("pending")) {
                        continue;
                    }
                    // 3. write it back as started, unconditionally
                    requests.fetch_add(2, Ordering::Relaxed);
                    let started = HashMap::from([
                        ("id".to_owned(), id.clone()),
                        ("status".to_owned(), s("in_progress")),
                        ("owner".to_owned(), s(&format!("w{w}"))),
                    ]);
                    client
                        .put_item()
                        .table_name(&table)
                        .set_item(Some(started))
                        .send()
                        .await?;
                    runs.fetch_add(1, Ordering::Relaxed);
                    // 4. done
                    let done = HashMap::from([
                        ("id".to_owned(), id),
                        ("status".to_owned(), s("succeeded")),
                    ]);
                    client
                        .put_item()
                        .table_name(&table)
                        .set_item(Some(done))
                        .send()
                        .await?;
                }
            })
        })
        .collect();
    for h in handles {
        h.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let runs = runs.load(Ordering::Relaxed);
    println!(
        "old tracker: {tasks} tasks, {workers} workers: {secs:.1}s, {:.1} tasks/s, {runs} executions ({} double), {:.2} requests per task",
        tasks as f64 / secs,
        runs.saturating_sub(tasks as u64),
        requests.load(Ordering::Relaxed) as f64 / tasks as f64
    );
    client.delete_table().table_name(&table).send().await?;
    Ok(())
}
