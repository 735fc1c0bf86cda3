//! `init`: the table and its three global secondary indexes, created if missing (on-demand
//! billing), then waited for until everything is `ACTIVE`.

use crate::error::{build_error, sdk_error};
use crate::item;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableStatus,
};
use std::time::Duration;
use tasktrack_core::{Error, Result};

/// How long `init` waits for a new table to become active.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);

/// The indexes: name, partition key, sort key.
const INDEXES: [(&str, &str, &str); 3] = [
    (item::CLAIM_INDEX, item::CLAIM_PK, item::CLAIM_SK),
    (item::STAGE_INDEX, item::STAGE_PK, item::CLAIM_SK),
    (item::LIST_INDEX, item::LIST_PK, item::LIST_SK),
];

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(|e| build_error("key schema", e))
}

fn string_attr(name: &str) -> Result<AttributeDefinition> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| build_error("attribute definition", e))
}

/// Creates both tables unless they exist, and waits until they and the indexes are active.
pub(crate) async fn ensure_tables(
    client: &Client,
    table: &str,
    counter_table: &str,
    endpoint: &str,
) -> Result<()> {
    ensure_table(client, table, true, endpoint).await?;
    ensure_table(client, counter_table, false, endpoint).await
}

async fn ensure_table(client: &Client, table: &str, indexed: bool, endpoint: &str) -> Result<()> {
    if describe(client, table, indexed, endpoint).await?.is_none() {
        create(client, table, indexed, endpoint).await?;
    }
    let deadline = tokio::time::Instant::now() + ACTIVE_TIMEOUT;
    loop {
        match describe(client, table, indexed, endpoint).await? {
            Some(true) => return Ok(()),
            Some(false) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            _ => {
                return Err(Error::Unavailable(format!(
                    "DynamoDB table {table} at {endpoint} did not become active"
                )));
            }
        }
    }
}

/// `None`: no table; `Some(active)`: it exists (with our indexes, else an error saying which is missing).
async fn describe(
    client: &Client,
    table: &str,
    indexed: bool,
    endpoint: &str,
) -> Result<Option<bool>> {
    let out = match client.describe_table().table_name(table).send().await {
        Ok(out) => out,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(sdk_error("DescribeTable", endpoint, e)),
    };
    let Some(desc) = out.table else {
        return Ok(None);
    };
    let indexes = desc.global_secondary_indexes();
    for &(name, _, _) in INDEXES.iter().filter(|_| indexed) {
        if !indexes.iter().any(|i| i.index_name() == Some(name)) {
            return Err(Error::Backend(format!(
                "DynamoDB table {table} exists without the {name:?} index tasktrack needs; \
                 use another table name or delete this table"
            )));
        }
    }
    let table_active = desc.table_status() == Some(&TableStatus::Active);
    let indexes_active = indexes
        .iter()
        .all(|i| i.index_status().is_none_or(|s| *s == IndexStatus::Active));
    Ok(Some(table_active && indexes_active))
}

async fn create(client: &Client, table: &str, indexed: bool, endpoint: &str) -> Result<()> {
    let mut attrs = vec![string_attr(item::PK)?, string_attr(item::SK)?];
    let mut gsis = Vec::new();
    for &(name, pk, sk) in INDEXES.iter().filter(|_| indexed) {
        for a in [pk, sk] {
            if !attrs.iter().any(|d| d.attribute_name() == a) {
                attrs.push(string_attr(a)?);
            }
        }
        // Projection ALL: a claim or a list page is one Query, with no follow-up reads.
        let gsi = GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key(pk, KeyType::Hash)?)
            .key_schema(key(sk, KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(|e| build_error("index", e))?;
        gsis.push(gsi);
    }
    let result = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(item::PK, KeyType::Hash)?)
        .key_schema(key(item::SK, KeyType::Range)?)
        .set_attribute_definitions(Some(attrs))
        .set_global_secondary_indexes((!gsis.is_empty()).then_some(gsis))
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        // Another process created it at the same moment: fine, we wait for it like for ours.
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(sdk_error("CreateTable", endpoint, e)),
    }
}

/// Deletes both tables (tests and benchmarks clean up with it).
pub(crate) async fn drop_tables(client: &Client, table: &str, endpoint: &str) -> Result<()> {
    drop_table(client, table, endpoint).await?;
    drop_table(client, &item::counter_table(table), endpoint).await
}

async fn drop_table(client: &Client, table: &str, endpoint: &str) -> Result<()> {
    match client.delete_table().table_name(table).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(sdk_error("DeleteTable", endpoint, e)),
    }
}
