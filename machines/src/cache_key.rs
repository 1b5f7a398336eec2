//! The per-server key of mcp-remote's config folder, byte-compatible with
//! mcp-remote 0.15 (`getServerUrlHash`), so users keep their files when they switch.
//!
//! key = hex MD5 of `serverUrl|resource|JSON(authorizeParams, sorted)|JSON(headers, sorted)|clientMetadataUrl|tokenEndpoint`,
//! where absent or empty parts are left out and headers are taken *before* `${VAR}` expansion.

use md5::{Digest, Md5};
use std::collections::BTreeMap;

/// What identifies a server configuration.
#[derive(Debug, Clone, Default)]
pub struct CacheKeyInput<'a> {
    /// The server URL exactly as given on the command line.
    pub server_url: &'a str,
    /// `--resource`, unless disabled.
    pub resource: Option<&'a str>,
    /// `--authorize-param` pairs.
    pub authorize_params: BTreeMap<String, String>,
    /// `--header`/`--header-file` pairs, values unexpanded; a later duplicate wins.
    pub headers: BTreeMap<String, String>,
    /// `--client-metadata-url`.
    pub client_metadata_url: Option<&'a str>,
    /// `--token-endpoint`.
    pub token_endpoint: Option<&'a str>,
}

/// The 32-hex-digit key.
pub fn cache_key(input: &CacheKeyInput<'_>) -> String {
    let mut parts: Vec<String> = vec![input.server_url.to_owned()];
    if let Some(r) = input.resource.filter(|r| !r.is_empty()) {
        parts.push(r.to_owned());
    }
    if !input.authorize_params.is_empty() {
        parts.push(serde_json::to_string(&input.authorize_params).unwrap_or_default());
    }
    if !input.headers.is_empty() {
        parts.push(serde_json::to_string(&input.headers).unwrap_or_default());
    }
    if let Some(u) = input.client_metadata_url.filter(|u| !u.is_empty()) {
        parts.push(u.to_owned());
    }
    if let Some(t) = input.token_endpoint.filter(|t| !t.is_empty()) {
        parts.push(t.to_owned());
    }
    let digest = Md5::digest(parts.join("|").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_mcp_remote_for_a_bare_url() {
        // node -e 'console.log(require("crypto").createHash("md5").update("https://example.com/mcp").digest("hex"))'
        let k = cache_key(&CacheKeyInput {
            server_url: "https://example.com/mcp",
            ..Default::default()
        });
        assert_eq!(k, "8724945d3c4865fe12d6890203193588");
    }

    #[test]
    fn headers_are_sorted_json() {
        let mut headers = BTreeMap::new();
        headers.insert("X-B".to_owned(), "2".to_owned());
        headers.insert("Authorization".to_owned(), "Bearer ${TOKEN}".to_owned());
        let k = cache_key(&CacheKeyInput {
            server_url: "https://a/mcp",
            headers,
            ..Default::default()
        });
        // md5 of: https://a/mcp|{"Authorization":"Bearer ${TOKEN}","X-B":"2"}
        let expected =
            Md5::digest(br#"https://a/mcp|{"Authorization":"Bearer ${TOKEN}","X-B":"2"}"#);
        assert_eq!(
            k,
            expected
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
    }
}
