//! Standard output that ends quietly when its reader has gone (`cachectl --json keys | head
//! -1`): `println!` panics on a closed pipe.

use std::io::{self, Write};

/// Writes one line to stdout. A closed pipe ends the process with exit code 0 (the reader took
/// what it wanted); any other write error with 2, in one line on stderr.
pub(crate) fn line(args: std::fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    if let Err(error) = writeln!(stdout, "{args}").and_then(|()| stdout.flush()) {
        if error.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("cachectl: cannot write the output: {error}");
        std::process::exit(2);
    }
}

/// `println!` through [`line`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

pub(crate) use out;
