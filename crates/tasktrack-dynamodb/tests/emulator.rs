//! The emulator itself: a cancelled `TransactWriteItems` writes nothing on the moto that
//! `scripts/services/moto.sh` starts. The launcher replaces moto's rollback (a deep copy of
//! every table touched, per item) with a snapshot of the items written; this pins that the
//! replacement still rolls back every kind of write: an update in place, a put of a new item, a
//! put over an existing one and a delete.

#![allow(clippy::unwrap_used)]

mod common;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use std::collections::HashMap;
use tasktrack_dynamodb::Settings;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn key(pk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s("0"))])
}

async fn value(client: &Client, table: &str, pk: &str) -> Option<String> {
    let out = client
        .get_item()
        .table_name(table)
        .set_key(Some(key(pk)))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.item
        .and_then(|i| i.get("n").and_then(|n| n.as_n().ok()).cloned())
}

/// The item `pk` with the number `n`.
fn item(pk: &str, n: &str) -> HashMap<String, AttributeValue> {
    let mut item = key(pk);
    item.insert("n".into(), AttributeValue::N(n.into()));
    item
}

async fn put(client: &Client, table: &str, pk: &str, n: &str) {
    let put = client
        .put_item()
        .table_name(table)
        .set_item(Some(item(pk, n)));
    put.send().await.unwrap();
}

/// A transaction's put of `item` into `table`.
fn put_of(table: &str, item: HashMap<String, AttributeValue>) -> TransactWriteItem {
    let put = Put::builder().table_name(table).set_item(Some(item));
    TransactWriteItem::builder()
        .put(put.build().unwrap())
        .build()
}

/// A transaction's delete of item `pk` from `table`, under `condition` if there is one.
fn delete_of(table: &str, pk: &str, condition: Option<&str>) -> TransactWriteItem {
    let delete = Delete::builder()
        .table_name(table)
        .set_key(Some(key(pk)))
        .set_condition_expression(condition.map(str::to_owned));
    TransactWriteItem::builder()
        .delete(delete.build().unwrap())
        .build()
}

#[tokio::test]
async fn a_cancelled_transaction_writes_nothing() {
    let Some(url) = common::fresh_url_or_skip("") else {
        return;
    };
    // The store creates the tables (and drops them at the end); the counter table has the
    // plain pk/sk schema this test writes.
    let store = common::open_temporary(&url).await.unwrap();
    let table = format!("{}.counters", store.table());
    let (client, _) = Settings::parse(&url).unwrap().client().await.unwrap();
    put(&client, &table, "updated", "1").await;
    put(&client, &table, "replaced", "1").await;
    put(&client, &table, "deleted", "1").await;

    let items = vec![
        TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(&table)
                    .set_key(Some(key("updated")))
                    .update_expression("ADD n :one")
                    .expression_attribute_values(":one", AttributeValue::N("1".into()))
                    .build()
                    .unwrap(),
            )
            .build(),
        put_of(&table, item("created", "1")),
        put_of(&table, item("replaced", "2")),
        delete_of(&table, "deleted", None),
        // The last item fails its condition, after the others were applied in moto's loop.
        delete_of(&table, "missing", Some("attribute_exists(pk)")),
    ];
    let sent = client
        .transact_write_items()
        .set_transact_items(Some(items))
        .send()
        .await;
    assert!(sent.is_err(), "the transaction must be cancelled");

    assert_eq!(
        value(&client, &table, "updated").await.as_deref(),
        Some("1")
    );
    assert_eq!(value(&client, &table, "created").await, None);
    assert_eq!(
        value(&client, &table, "replaced").await.as_deref(),
        Some("1")
    );
    assert_eq!(
        value(&client, &table, "deleted").await.as_deref(),
        Some("1")
    );
}
