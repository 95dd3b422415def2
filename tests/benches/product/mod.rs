//! The value the Redis-hit benchmarks read: a product of about 1 KiB encoded.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    id: u64,
    name: String,
    description: String,
    tags: Vec<String>,
    price_cents: u32,
    stock: u32,
}

pub fn product(id: u64) -> Product {
    Product {
        id,
        name: format!("Adjustable desk lamp #{id}"),
        description: "A warm-white LED desk lamp with a weighted base. ".repeat(18),
        tags: vec!["lighting".to_owned(), "office".to_owned(), "led".to_owned()],
        price_cents: 4_999,
        stock: 120,
    }
}
