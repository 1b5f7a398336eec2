//! Which scopes to ask for (MCP authorization §Scope Selection Strategy,
//! §Step-Up Authorization Flow, §Refresh Tokens).

/// The `scope` of the first authorization request: a pinned scope
/// (`--static-oauth-client-metadata`) wins; then the challenge's `scope`
/// (authoritative); then all of the protected resource's `scopes_supported`;
/// else none — no invented defaults. `offline_access` is added only when the
/// authorization server advertises it.
pub fn initial_scope(
    pinned: Option<&str>,
    challenge: Option<&str>,
    prm_scopes: Option<&[String]>,
    as_scopes: Option<&[String]>,
) -> Option<String> {
    let base = pinned
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
        .or_else(|| {
            challenge
                .filter(|s| !s.trim().is_empty())
                .map(str::to_owned)
        })
        .or_else(|| prm_scopes.filter(|l| !l.is_empty()).map(|l| l.join(" ")))?;
    let offline = as_scopes.is_some_and(|l| l.iter().any(|s| s == "offline_access"));
    if offline && !base.split_whitespace().any(|s| s == "offline_access") {
        Some(format!("{base} offline_access"))
    } else {
        Some(base)
    }
}

/// Step-up on 403 `insufficient_scope`: the union of what was asked before and
/// what the challenge names, in first-seen order.
pub fn step_up(previous: Option<&str>, challenged: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for s in previous
        .unwrap_or("")
        .split_whitespace()
        .chain(challenged.split_whitespace())
    {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn order_of_scope_sources() {
        let prm = l(&["mcp:basic", "mcp:read", "mcp:write"]);
        assert_eq!(
            initial_scope(None, Some("a b"), Some(&prm), None).as_deref(),
            Some("a b")
        );
        assert_eq!(
            initial_scope(None, None, Some(&prm), None).as_deref(),
            Some("mcp:basic mcp:read mcp:write")
        );
        assert_eq!(
            initial_scope(None, None, None, None),
            None,
            "omitted, not invented"
        );
        assert_eq!(initial_scope(None, None, Some(&[]), None), None);
        assert_eq!(
            initial_scope(Some("x"), Some("a"), Some(&prm), None).as_deref(),
            Some("x")
        );
        let as_scopes = l(&["mcp:basic", "offline_access"]);
        assert_eq!(
            initial_scope(None, Some("mcp:basic"), None, Some(&as_scopes)).as_deref(),
            Some("mcp:basic offline_access")
        );
        assert_eq!(initial_scope(None, None, None, Some(&as_scopes)), None);
    }

    #[test]
    fn step_up_is_a_union() {
        assert_eq!(
            step_up(Some("mcp:basic"), "mcp:basic mcp:write"),
            "mcp:basic mcp:write"
        );
        assert_eq!(step_up(None, "a"), "a");
    }
}
