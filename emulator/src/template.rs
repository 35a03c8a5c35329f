//! Message templates of the services' error catalogs: `{0}`, `{1}`, … filled from arguments.

/// Fills `{0}`, `{1}`, … in one pass, so text inside an argument is never substituted again;
/// anything else in braces is kept as written.
pub fn fill(template: &str, args: &[&str]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let arg = after
            .find('}')
            .and_then(|close| Some((after[..close].parse::<usize>().ok()?, close)))
            .and_then(|(i, close)| Some((args.get(i)?, close)));
        match arg {
            Some((a, close)) => {
                out.push_str(a);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::fill;

    #[test]
    fn fills_once_and_keeps_other_braces() {
        assert_eq!(fill("'{0}' in '{1}'", &["{1}", "x"]), "'{1}' in 'x'");
        assert_eq!(fill("a {0} {9} {x", &["{0}"]), "a {0} {9} {x");
        assert_eq!(fill("{}", &[]), "{}");
    }
}
