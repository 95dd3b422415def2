//! RESP2, as far as a client of the framework speaks it: commands arrive as arrays of bulk
//! strings, replies go back as any RESP2 type.

/// One reply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    Status(&'static str),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
    /// Several replies to one command, back to back (`SUBSCRIBE a b`).
    Many(Vec<Reply>),
}

impl Reply {
    pub(crate) fn ok() -> Self {
        Self::Status("OK")
    }

    pub(crate) fn error(message: impl Into<String>) -> Self {
        Self::Error(message.into())
    }

    pub(crate) fn bulk(bytes: impl Into<Vec<u8>>) -> Self {
        Self::Bulk(bytes.into())
    }

    pub(crate) fn optional(bytes: Option<Vec<u8>>) -> Self {
        bytes.map_or(Self::Nil, Self::Bulk)
    }

    pub(crate) fn int(n: impl TryInto<i64>) -> Self {
        Self::Int(n.try_into().unwrap_or(i64::MAX))
    }

    /// Appends the wire form to `out`.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        match self {
            Self::Status(text) => {
                out.push(b'+');
                out.extend_from_slice(text.as_bytes());
            }
            Self::Error(message) => {
                out.push(b'-');
                out.extend(
                    message
                        .bytes()
                        .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
                );
            }
            Self::Int(n) => {
                out.push(b':');
                out.extend_from_slice(n.to_string().as_bytes());
            }
            Self::Bulk(bytes) => {
                out.push(b'$');
                out.extend_from_slice(bytes.len().to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(bytes);
            }
            Self::Nil => out.extend_from_slice(b"$-1"),
            Self::Many(replies) => {
                for reply in replies {
                    reply.write(out);
                }
                return;
            }
            Self::Array(items) => {
                out.push(b'*');
                out.extend_from_slice(items.len().to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
                for item in items {
                    item.write(out);
                }
                return;
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// What the buffer's start holds.
#[derive(Debug, PartialEq)]
pub(crate) enum Parsed {
    /// A whole command and the bytes it took.
    Command(Vec<Vec<u8>>, usize),
    /// Not all of it has arrived.
    Incomplete,
    /// Not RESP a client sends: the connection is closed, as Redis does.
    Invalid(&'static str),
}

/// The first command in `buf`.
pub(crate) fn parse(buf: &[u8]) -> Parsed {
    let Some((count, mut at)) = line_number(buf, 0, b'*') else {
        return incomplete_or(buf, "expected '*', got something else");
    };
    let Ok(count) = usize::try_from(count) else {
        return Parsed::Invalid("invalid multibulk length");
    };
    if count > 1024 * 1024 {
        return Parsed::Invalid("invalid multibulk length");
    }
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let Some((len, start)) = line_number(buf, at, b'$') else {
            return incomplete_or(
                &buf[at.min(buf.len())..],
                "expected '$', got something else",
            );
        };
        let Ok(len) = usize::try_from(len) else {
            return Parsed::Invalid("invalid bulk length");
        };
        if len > 512 * 1024 * 1024 {
            return Parsed::Invalid("invalid bulk length");
        }
        let end = start + len;
        if buf.len() < end + 2 {
            return Parsed::Incomplete;
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Parsed::Invalid("expected CRLF after a bulk string");
        }
        args.push(buf[start..end].to_vec());
        at = end + 2;
    }
    Parsed::Command(args, at)
}

fn incomplete_or(rest: &[u8], why: &'static str) -> Parsed {
    match rest.is_empty() || !rest.contains(&b'\n') {
        true if rest.first().is_none_or(|b| matches!(b, b'*' | b'$')) => Parsed::Incomplete,
        _ => Parsed::Invalid(why),
    }
}

/// `<prefix><number>\r\n` at `at`: the number and where the next line starts.
fn line_number(buf: &[u8], at: usize, prefix: u8) -> Option<(i64, usize)> {
    if *buf.get(at)? != prefix {
        return None;
    }
    let end = at + buf[at..].windows(2).position(|w| w == b"\r\n")?;
    let number = std::str::from_utf8(&buf[at + 1..end]).ok()?.parse().ok()?;
    Some((number, end + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_parsed_once_whole() {
        let wire = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        for cut in 0..wire.len() {
            assert_eq!(parse(&wire[..cut]), Parsed::Incomplete, "cut at {cut}");
        }
        assert_eq!(
            parse(wire),
            Parsed::Command(vec![b"GET".to_vec(), b"k".to_vec()], wire.len())
        );
    }

    #[test]
    fn inline_commands_are_refused() {
        assert!(matches!(parse(b"PING\r\n"), Parsed::Invalid(_)));
    }

    #[test]
    fn replies_take_their_wire_form() {
        let mut out = Vec::new();
        Reply::Array(vec![
            Reply::Int(1),
            Reply::Nil,
            Reply::bulk("ab"),
            Reply::ok(),
        ])
        .write(&mut out);
        assert_eq!(out, b"*4\r\n:1\r\n$-1\r\n$2\r\nab\r\n+OK\r\n");
    }
}
