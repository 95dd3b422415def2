use cache_runtime::cache_put;

#[derive(serde::Serialize)]
struct Row {
    id: u64,
    version: u64,
}

// A closure takes the stored value alone.
#[cache_put(entity = "row", key = "{row.id}", revision = |row, extra| row.version)]
async fn two_arguments(row: Row) -> Row {
    row
}

// `revision` needs a value.
#[cache_put(entity = "row", key = "{row.id}", revision)]
async fn no_value(row: Row) -> Row {
    row
}

// A revision is an unsigned integer of at most 64 bits.
#[cache_put(entity = "row", key = "{id}", revision = name)]
async fn not_a_number(id: u64, name: &str) -> u64 {
    id
}

fn main() {}
