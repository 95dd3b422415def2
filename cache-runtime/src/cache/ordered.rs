//! Ordered writes keep their revision inside the value (see [`crate::envelope`]), so an ordered
//! key costs no more memory than a plain one. A revision record, `{<key>}:%revision`, exists
//! only where a deletion must be remembered: when a key holding an ordered value is
//! invalidated, its revision moves to the record for the rest of the value's TTL, so a late
//! older write cannot bring the deleted value back.
//!
//! Revisions are compared as decimal strings (length, then digits): Lua numbers lose
//! precision past 2^53.

use super::Cache;
use crate::entity::CacheKey;
use crate::script::Script;

/// The Lua both scripts share: the revision an envelope's first 60 bytes carry (after the
/// 31-byte header and the optional 8-byte id token, a length byte and the digits), and the
/// comparison of two revisions.
macro_rules! revision_lua {
    () => {
        r"
local function stored_revision(head)
  if type(head) ~= 'string' or #head < 32 or string.byte(head, 1) ~= 2 then return nil end
  local flags = string.byte(head, 3)
  if bit.band(flags, 16) == 0 then return nil end
  local at = 32
  if bit.band(flags, 4) ~= 0 then at = at + 8 end
  local len = string.byte(head, at)
  if not len then return nil end
  return string.sub(head, at + 1, at + len)
end
local function above(a, b) return #a > #b or (#a == #b and a > b) end
"
    };
}

/// An ordered write of a value already written beside the key (`{<key>}:%loaded:<id>`, a plain
/// `SET PX` in the same pipeline, so the value never enters Lua): refused (0, and the value
/// beside the key deleted) when the stored value or the key's deletion record holds a higher
/// revision; otherwise the lease is voided, the value renamed onto the key (keeping its TTL)
/// and any record dropped, the value now carrying a revision at least as high.
/// KEYS: the value beside the key, the key, its revision record, its lease. ARGV: revision.
pub(crate) static WRITE_ORDERED: Script = Script::new(concat!(
    revision_lua!(),
    r"
local held = redis.call('GET', KEYS[3])
local stored = stored_revision(redis.pcall('GETRANGE', KEYS[2], 0, 59))
if (held and above(held, ARGV[1])) or (stored and above(stored, ARGV[1])) then
  redis.call('UNLINK', KEYS[1])
  return 0
end
if held then redis.call('UNLINK', KEYS[3]) end
redis.call('UNLINK', KEYS[4])
redis.call('RENAME', KEYS[1], KEYS[2])
return 1
"
));

/// The deletion of a key (and its bookkeeping keys): a value written with a revision leaves
/// that revision in the key's record, for the value's remaining TTL, unless the record holds a
/// higher one. Answers whether the key was there.
/// KEYS: the key, its revision record, then the bookkeeping keys to delete with it.
pub(crate) static REMOVE_KEY: Script = Script::new(concat!(
    revision_lua!(),
    r"
local stored = stored_revision(redis.pcall('GETRANGE', KEYS[1], 0, 59))
if stored then
  local ttl = redis.call('PTTL', KEYS[1])
  local held = redis.call('GET', KEYS[2])
  if ttl > 0 and not (held and above(held, stored)) then
    redis.call('SET', KEYS[2], stored, 'PX', ttl)
  end
end
local removed = redis.call('UNLINK', KEYS[1])
if #KEYS > 2 then redis.call('UNLINK', unpack(KEYS, 3)) end
return removed
"
));

impl Cache {
    /// Adds to `pipeline` what stores `bytes` under `key` unless the key holds (or its deletion
    /// record remembers) a higher revision than `revision`; its last reply is 1 if stored.
    pub(crate) fn add_ordered_write(
        &self,
        pipeline: &mut redis::Pipeline,
        key: &CacheKey,
        bytes: &[u8],
        ttl_ms: u64,
        revision: u64,
    ) {
        let beside = key.loaded_key(&format!("{:016x}", rand::random::<u64>()));
        let keys = [key.as_str(), &key.revision_key(), &key.lease_key()];
        self.add_beside_then(pipeline, &beside, bytes, ttl_ms, &WRITE_ORDERED, &keys)
            .arg(revision.to_string());
    }
}
