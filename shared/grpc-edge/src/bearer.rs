//! The bearer token of a request's `authorization` metadata.

/// The bearer token of the `authorization` metadata entry, if there is a well-formed one.
pub fn bearer_token(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    parse_bearer(metadata.get("authorization")?.to_str().ok()?)
}

/// [`bearer_token`] for plain HTTP headers (tower layers in front of a gRPC service).
pub fn bearer_token_in_headers(headers: &http::HeaderMap) -> Option<&str> {
    parse_bearer(headers.get(http::header::AUTHORIZATION)?.to_str().ok()?)
}

fn parse_bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_accepts_any_scheme_case_and_rejects_other_schemes() {
        let mut md = tonic::metadata::MetadataMap::new();
        assert_eq!(bearer_token(&md), None);
        md.insert("authorization", "bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&md), Some("abc"));
        md.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&md), None);
        md.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer_token(&md), None);
    }
}
