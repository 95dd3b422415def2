//! `cachectl inspect`: what one key holds, and whether a read would serve it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::RedisResult;
use redis::aio::ConnectionLike;

use super::names::{entity_mark_key, variants_token_key};
use crate::envelope::Header;
use crate::key::{app_mark_key, tag_mark_key};

/// Whether a read would serve the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validity {
    /// Not older than any invalidation that covers it.
    Valid,
    /// An invalidation after it was written covers it: reads treat it as a miss.
    Invalidated(String),
    /// The key is not of the `{app}:v{N}:{entity}:{id}[:{variant}]` shape, or not a value.
    Unknown(String),
}

/// What one key holds.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct KeyReport {
    /// The key.
    pub key: String,
    /// Whether it exists.
    pub exists: bool,
    /// Time left (`None`: no TTL, or no key).
    pub ttl: Option<Duration>,
    /// Stored bytes.
    pub size: usize,
    /// The envelope's header, when the bytes are an envelope.
    pub header: Option<Header>,
    /// The tags the value carries.
    pub tags: Vec<String>,
    /// Why the bytes are not a readable envelope (corrupt, another program's value).
    pub format_error: Option<String>,
    /// Whether a read would serve it.
    pub validity: Validity,
    /// The value as JSON text, when the JSON codec wrote it (postcard is not self-describing:
    /// it needs the value's type).
    pub json: Option<String>,
    /// The payload's first bytes in hex, when it is not JSON.
    pub payload_preview: Option<String>,
}

impl KeyReport {
    /// How far past its freshness the value is (`None` while fresh, or without a header).
    pub fn stale_for(&self) -> Option<Duration> {
        let header = self.header.as_ref()?;
        let now = now_ms();
        (now > header.fresh_until_ms).then(|| Duration::from_millis(now - header.fresh_until_ms))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The parts of a value key: app, version, entity, id (escaped), variant.
struct Parts<'a> {
    app: &'a str,
    version: u32,
    entity: &'a str,
    id: &'a str,
    variant: Option<&'a str>,
}

fn parts(key: &str) -> Option<Parts<'_>> {
    let mut split = key.splitn(5, ':');
    let app = split.next()?;
    let version = split.next()?.strip_prefix('v')?.parse().ok()?;
    let entity = split.next()?;
    let id = split.next()?;
    if id.starts_with('%') || entity.is_empty() {
        return None;
    }
    Some(Parts {
        app,
        version,
        entity,
        id,
        variant: split.next(),
    })
}

/// Reads `key` and decodes it as the cache would, without changing anything.
pub async fn inspect_key<C: ConnectionLike>(conn: &mut C, key: &str) -> RedisResult<KeyReport> {
    let (bytes, pttl): (Option<Vec<u8>>, i64) = redis::pipe()
        .cmd("GET")
        .arg(key)
        .cmd("PTTL")
        .arg(key)
        .query_async(conn)
        .await?;
    let mut report = KeyReport {
        key: key.to_owned(),
        exists: bytes.is_some(),
        ttl: u64::try_from(pttl).ok().map(Duration::from_millis),
        size: bytes.as_ref().map_or(0, Vec::len),
        header: None,
        tags: Vec::new(),
        format_error: None,
        validity: Validity::Unknown("no such key".to_owned()),
        json: None,
        payload_preview: None,
    };
    let Some(bytes) = bytes else {
        return Ok(report);
    };
    let envelope = match Header::unwrap(&bytes) {
        Ok(envelope) => envelope,
        Err(reason) => {
            report.format_error = Some(reason.to_owned());
            report.validity = Validity::Unknown(format!("not readable: {reason}"));
            return Ok(report);
        }
    };
    report.header = Some(envelope.header);
    report.tags = envelope.tags.iter().map(str::to_owned).collect();
    decode_payload(&mut report, envelope.header, envelope.payload);
    report.validity = match parts(key) {
        Some(parts) => validity(conn, &parts, &envelope.header, &report.tags).await?,
        None => Validity::Unknown("not a value key ({app}:v{N}:{entity}:{id}[:{variant}])".into()),
    };
    Ok(report)
}

fn decode_payload(report: &mut KeyReport, header: Header, payload: &[u8]) {
    let plain = match header.compressed {
        true => match crate::compress::decompress(payload, 64 << 20) {
            Ok(plain) => plain,
            Err(reason) => {
                report.format_error = Some(format!("cannot decompress: {reason}"));
                return;
            }
        },
        false => payload.to_vec(),
    };
    let is_json = header.codec == crate::codec::JSON_ID;
    match std::str::from_utf8(&plain) {
        Ok(text) if is_json => report.json = Some(text.to_owned()),
        _ => {
            let preview: String = plain.iter().take(48).map(|b| format!("{b:02x}")).collect();
            report.payload_preview = Some(preview);
        }
    }
}

/// The marks and the variants token a read checks, read without raising or recreating any.
async fn validity<C: ConnectionLike>(
    conn: &mut C,
    parts: &Parts<'_>,
    header: &Header,
    tags: &[String],
) -> RedisResult<Validity> {
    let Parts {
        app,
        version,
        entity,
        id,
        variant,
    } = parts;
    let token_key = variant
        .map(|_| variants_token_key(app, *version, entity, id))
        .transpose();
    let (entity_mark, token_key) = match (entity_mark_key(app, *version, entity), token_key) {
        (Ok(mark), Ok(token)) => (mark, token),
        (Err(error), _) | (_, Err(error)) => {
            return Ok(Validity::Unknown(format!("not a value key: {error}")));
        }
    };
    let mut marks = vec![
        (entity_mark, format!("entity `{entity}`")),
        (app_mark_key(app), format!("app `{app}`")),
    ];
    for tag in tags {
        marks.push((tag_mark_key(app, tag), format!("tag `{tag}`")));
    }
    // One `GET` each: on a Redis Cluster each mark and the token hash to a slot of their own,
    // and one pipeline may not span slots. A handful of round trips, for one key.
    let mut values: Vec<Option<u64>> = Vec::with_capacity(marks.len() + 1);
    for key in marks.iter().map(|(k, _)| k).chain(&token_key) {
        values.push(redis::cmd("GET").arg(key).query_async(conn).await?);
    }
    for ((_, what), mark) in marks.iter().zip(&values) {
        match mark {
            None => {
                return Ok(Validity::Invalidated(format!(
                    "the {what} invalidation mark is missing (evicted, or never set): the next \
                     read sets it to \"invalidated now\", so this value will not be served"
                )));
            }
            Some(mark) if header.epoch < *mark => {
                return Ok(Validity::Invalidated(format!(
                    "the {what} was invalidated after this value was written (epoch {} < mark {mark})",
                    header.epoch
                )));
            }
            Some(_) => {}
        }
    }
    if token_key.is_some() {
        let token = values.get(marks.len()).copied().flatten();
        if token.is_none() || token != header.id_token {
            return Ok(Validity::Invalidated(
                "its id was invalidated after this variant was written (variants token changed)"
                    .to_owned(),
            ));
        }
    }
    Ok(Validity::Valid)
}
