use cache_runtime::cached;

struct NotSerializable {
    id: u64,
}

struct Row {
    id: u64,
}

struct Opaque;

/// A value type that is not `Serialize`.
#[cached(entity = "thing", key = "{id}")]
async fn thing(id: u64) -> Result<NotSerializable, String> {
    Ok(NotSerializable { id })
}

/// An id type that is not a `KeyPart`.
#[cached(entity = "opaque", key = "{o}")]
async fn by_opaque(o: Opaque) -> Result<u64, String> {
    let _ = o;
    Ok(1)
}

/// A typo in a field of the key template.
#[cached(entity = "row", key = "{r.idd}")]
async fn by_row(r: Row) -> Result<u64, String> {
    Ok(r.id)
}

fn main() {}
