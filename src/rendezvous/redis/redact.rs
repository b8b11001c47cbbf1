//! Store URLs in logs, errors and `--print-config`: the password never appears.

/// `url` with any password replaced by `***`, for logs and `--print-config`:
/// `redis://user:secret@host:6379/0` → `redis://user:***@host:6379/0`. Also hides a
/// `pass=`/`password=` query parameter (how `redis+unix://` URLs carry one).
///
/// Errs on the side of hiding: a password runs to the *last* `@` of the URL, so one
/// holding an unescaped `/`, `?` or `@` is still hidden whole.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        // Not a URL (a typo such as `redis:/u:pw@host`?): anything before an `@` may be
        // a password.
        return match url.rfind('@') {
            Some(at) => format!("***{}", &url[at..]),
            None => url.to_owned(),
        };
    };
    let (scheme, mut rest) = url.split_at(scheme_end);
    let mut out = String::from(scheme);
    if let Some(at) = rest.rfind('@') {
        // Without a `:` there is no password, only a user name (or an `@` in a query).
        if let Some((user, _password)) = rest[..at].split_once(':') {
            out.push_str(user);
            out.push_str(":***");
            rest = &rest[at..];
        }
    }
    match rest.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((name, _)) if name == "pass" || name == "password" => {
                        format!("{name}=***")
                    }
                    _ => param.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(rest),
    }
    out
}

/// `text` with every URL in it passed through [`redact`]: for messages that may quote a
/// store URL (a config value, a TOML error's snippet of the file). A URL runs from its
/// scheme to the next whitespace or quote.
pub fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'))
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '`')
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        out.push_str(&redact(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::{redact, redact_urls_in};

    #[test]
    fn urls_inside_messages_are_redacted() {
        let message = "3 | store = \"redis://:hunter2@valkey:6379/0\"\n  | ^ expected";
        let redacted = redact_urls_in(message);
        assert!(!redacted.contains("hunter2"), "{redacted}");
        assert!(
            redacted.contains("redis://:***@valkey:6379/0"),
            "{redacted}"
        );
        assert_eq!(redact_urls_in("no url here"), "no url here");
    }

    #[test]
    fn redact_hides_passwords_only() {
        let cases = [
            (
                "redis://user:secret@host:6379/0",
                "redis://user:***@host:6379/0",
            ),
            ("redis://:secret@host:6379", "redis://:***@host:6379"),
            ("redis://user@host", "redis://user@host"),
            ("redis://host:6379/2", "redis://host:6379/2"),
            ("valkey://u:p@ss/w?rd@host/1", "valkey://u:***@host/1"),
            (
                "redis+unix:///run/redis.sock?db=1&pass=secret",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
            (
                "rediss://u:s3cr3t@h:1/0?protocol=resp3",
                "rediss://u:***@h:1/0?protocol=resp3",
            ),
            ("redis://host/0?pass=a@b", "redis://host/0?pass=***"),
            ("redis://host:1/0?pass=a@b", "redis://host:***@b"),
            ("not a url", "not a url"),
            ("redis:/user:pw@host", "***@host"),
        ];
        for (url, expected) in cases {
            assert_eq!(redact(url), expected, "{url}");
        }
    }
}
