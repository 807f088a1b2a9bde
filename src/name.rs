//! The rule every segment name follows, on its own so that both the error
//! messages (`error`) and the check (`segment::validate_name`) can state it
//! without importing each other. Nothing else lives here.

/// Longest segment name accepted (Linux allows 255 bytes in /dev/shm).
pub const MAX_NAME_LEN: usize = 200;

/// What is wrong with `name`, if anything: it must be 1..=200 bytes of
/// `[A-Za-z0-9._-]`, not starting with '.', so it can never climb out of
/// `/dev/shm` or hide as a dotfile.
pub(crate) fn problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("the name is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Some("the name is too long");
    }
    if name.contains('/') {
        return Some("names may not contain '/' (give a bare name like \"prices\")");
    }
    if name.starts_with('.') {
        return Some("names may not start with '.' (no '..', no hidden files)");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Some("the name holds a character outside [A-Za-z0-9._-]");
    }
    None
}
