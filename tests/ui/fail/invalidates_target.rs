use cache_runtime::invalidates;

#[invalidates(entity = "product", key = "{id}", all)]
async fn both(id: u64) {
    let _ = id;
}

#[invalidates(entity = "product")]
async fn neither(id: u64) {
    let _ = id;
}

#[invalidates(entity = "product", all = true)]
async fn flag_with_value(id: u64) {
    let _ = id;
}

/// Tags span entities and versions: a version without an entity says so.
#[invalidates(tags = ["group:{id}"], version = 2)]
async fn tags_with_a_version(id: u64) {
    let _ = id;
}

fn main() {}
