//! Which handler a request goes to (spec §4), and how a path segment becomes a key (spec §2).

use dht_proto::InfoHash;

/// A path segment as a key: its first 40 characters if they are hex (either case) and not all
/// zero, otherwise SHA-1 of the raw, not percent-decoded, segment. Every segment is a key: there
/// is no "bad hash".
pub fn parse_key(segment: &str) -> InfoHash {
    match InfoHash::from_hex(segment) {
        Ok(h) if !h.is_zero() => h,
        _ => InfoHash::get(segment),
    }
}

/// A routed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `GET /`, `GET /node/info`.
    NodeInfo,
    /// `GET /node/stats`.
    Stats,
    /// `GET /{h}`, `GET /key/{h}`.
    Get(InfoHash),
    /// `POST /{h}`, `POST /key/{h}`.
    Put(InfoHash),
    /// `GET /key/{h}/listen`.
    Listen(InfoHash),
    /// `OPTIONS /{h}`, `OPTIONS /key/{h}`, `OPTIONS /key/{h}/listen`, `GET /key/{h}/options`.
    Options,
    /// `SUBSCRIBE /{h}`, `SUBSCRIBE /key/{h}`.
    Subscribe(InfoHash),
    /// `UNSUBSCRIBE /{h}`, `UNSUBSCRIBE /key/{h}`.
    Unsubscribe(InfoHash),
    /// `POST /node/pingPush`.
    PingPush,
    /// `POST /key/{h}/sign`: a put signed by the proxy's node.
    Sign(InfoHash),
    /// `POST /key/{h}/encrypt`: a put encrypted by the proxy's node to the body's `"to"`.
    Encrypt(InfoHash),
    /// Anything else.
    Unknown,
}

/// Routes `method` and `path` (without the query string). A trailing `/` is accepted.
pub(crate) fn route(method: &str, path: &str) -> Route {
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path.strip_suffix('/').unwrap_or(path);
    let segs: Vec<&str> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    };
    match (method, segs.as_slice()) {
        ("GET", []) | ("GET", ["node", "info"]) => Route::NodeInfo,
        ("GET", ["node", "stats"]) => Route::Stats,
        ("POST", ["node", "pingPush"]) => Route::PingPush,
        ("OPTIONS", [_]) | ("OPTIONS", ["key", _]) | ("OPTIONS", ["key", _, "listen"]) => Route::Options,
        ("GET", ["key", _, "options"]) => Route::Options,
        ("GET", ["key", h, "listen"]) => Route::Listen(parse_key(h)),
        ("POST", ["key", h, "sign"]) => Route::Sign(parse_key(h)),
        ("POST", ["key", h, "encrypt"]) => Route::Encrypt(parse_key(h)),
        (m, [h]) | (m, ["key", h]) if !h.is_empty() => match m {
            "GET" => Route::Get(parse_key(h)),
            "POST" => Route::Put(parse_key(h)),
            "SUBSCRIBE" => Route::Subscribe(parse_key(h)),
            "UNSUBSCRIBE" => Route::Unsubscribe(parse_key(h)),
            _ => Route::Unknown,
        },
        _ => Route::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> InfoHash {
        InfoHash::from_hex(s).unwrap_or(InfoHash::ZERO)
    }

    #[test]
    fn keys_follow_the_spec() {
        let foo = h("0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33");
        assert_eq!(parse_key("foo"), foo);
        assert_eq!(parse_key("0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33"), foo);
        assert_eq!(parse_key("0BEEC7B5EA3F0FDBC95D0DD47F3C5BC275DA8A33"), foo);
        assert_eq!(parse_key("0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33f"), foo);
        assert_eq!(parse_key("a%20b"), InfoHash::get("a%20b"));
        let zero = "0".repeat(40);
        assert_eq!(parse_key(&zero), InfoHash::get(&zero));
        let bad = format!("{}g", "0".repeat(39));
        assert_eq!(parse_key(&bad), InfoHash::get(&bad));
    }

    #[test]
    fn routes() {
        let foo = parse_key("foo");
        assert_eq!(route("GET", "/"), Route::NodeInfo);
        assert_eq!(route("GET", "/node/info/"), Route::NodeInfo);
        assert_eq!(route("GET", "/node/stats"), Route::Stats);
        assert_eq!(route("GET", "/key/foo"), Route::Get(foo));
        assert_eq!(route("GET", "/key/foo/"), Route::Get(foo));
        assert_eq!(route("GET", "/foo"), Route::Get(foo));
        assert_eq!(route("GET", "/stats"), Route::Get(parse_key("stats")));
        assert_eq!(route("GET", "/node"), Route::Get(parse_key("node")));
        assert_eq!(route("POST", "/key/foo"), Route::Put(foo));
        assert_eq!(route("POST", "/foo"), Route::Put(foo));
        assert_eq!(route("GET", "/key/foo/listen"), Route::Listen(foo));
        assert_eq!(route("GET", "/foo/listen"), Route::Unknown);
        assert_eq!(route("OPTIONS", "/foo"), Route::Options);
        assert_eq!(route("OPTIONS", "/key/foo"), Route::Options);
        assert_eq!(route("OPTIONS", "/key/foo/listen"), Route::Options);
        assert_eq!(route("GET", "/key/foo/options"), Route::Options);
        assert_eq!(route("SUBSCRIBE", "/foo"), Route::Subscribe(foo));
        assert_eq!(route("UNSUBSCRIBE", "/key/foo"), Route::Unsubscribe(foo));
        assert_eq!(route("POST", "/node/pingPush"), Route::PingPush);
        assert_eq!(route("POST", "/key/foo/sign"), Route::Sign(foo));
        assert_eq!(route("POST", "/key/foo/encrypt"), Route::Encrypt(foo));
        for (m, p) in [
            ("PUT", "/key/foo"),
            ("DELETE", "/foo"),
            ("HEAD", "/"),
            ("GET", "/key/foo/123"),
            ("LISTEN", "/key/foo"),
            ("GET", "/key/foo/sign"),
            ("POST", "/foo/sign"),
        ] {
            assert_eq!(route(m, p), Route::Unknown, "{m} {p}");
        }
    }
}
