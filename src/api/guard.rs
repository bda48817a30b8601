//! What every request to the local API passes before a handler sees it, and what every answer
//! carries: the API trusts no browser (design invariant 12).
//!
//! A web page in the kiosk's own browser can send requests to 127.0.0.1 (a form, an `<img>`, a
//! `no-cors` fetch) and, through DNS rebinding, even read answers under a name of its own. So:
//! - the `Host` must be this listener's: `localhost` or an IP literal (loopback, or the address
//!   it is bound to) with its port (421 otherwise: a rebinding name never matches);
//! - a request a browser marks as coming from another site or origin (`Sec-Fetch-Site`,
//!   `Origin`) is refused (403), but for a plain navigation to the page itself;
//! - a state-changing request needs `Content-Type: application/json` or the
//!   `X-Kiosk-CSRF: 1` header (multipart, PDFs): neither can be sent across origins without a
//!   CORS preflight, which this API never grants (403 otherwise);
//! - every answer is `nosniff`, not cacheable, not embeddable by other origins
//!   (`Cross-Origin-Resource-Policy: same-origin`) and under a CSP that runs no script.
//!
//! The Unix socket skips the `Host` check (no browser reaches it; its 0600 mode is its fence).

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The header that marks a state-changing request without a JSON body as the page's own.
pub const CSRF_HEADER: &str = "x-kiosk-csrf";

/// The `Host` values one listener answers to.
#[derive(Debug, Clone)]
pub enum Hosts {
    /// A TCP listener bound to `listen`: `localhost` or an IP literal (loopback, the bound
    /// address, any address when bound to all) with its port, or one of `names` (the
    /// configuration's `api.allowed_hosts`, e.g. the kiosk's name on the fleet's VPN). Any
    /// other name could be rebound to 127.0.0.1 by a hostile page's DNS, so none is accepted.
    Tcp { listen: std::net::SocketAddr, names: std::sync::Arc<[String]> },
    /// The Unix socket: any.
    Any,
}

impl Hosts {
    /// A TCP listener on `listen` with no names of its own.
    pub fn tcp(listen: std::net::SocketAddr) -> Hosts {
        Hosts::Tcp { listen, names: std::sync::Arc::from(Vec::new()) }
    }

    fn allows(&self, host: Option<&str>) -> bool {
        match (self, host) {
            (Hosts::Any, _) => true,
            (Hosts::Tcp { listen, names }, Some(h)) => host_matches(listen, names, h),
            (Hosts::Tcp { .. }, None) => false,
        }
    }

    fn allows_origin(&self, origin: &str) -> bool {
        match self {
            Hosts::Any => true,
            Hosts::Tcp { listen, names } => {
                origin.strip_prefix("http://").is_some_and(|h| host_matches(listen, names, h))
            }
        }
    }
}

fn host_matches(listen: &std::net::SocketAddr, names: &[String], host: &str) -> bool {
    let Some((name, port)) = host.rsplit_once(':') else { return false };
    if port.parse::<u16>() != Ok(listen.port()) {
        return false;
    }
    if name.eq_ignore_ascii_case("localhost") || names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        return true;
    }
    let literal = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
    match literal.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip == listen.ip() || listen.ip().is_unspecified(),
        Err(_) => false,
    }
}

/// The request's `Host` (HTTP/1.1 always has one).
pub fn host(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|v| v.to_str().ok())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Why a request is refused before any handler, if it is.
pub fn check(hosts: &Hosts, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    if !hosts.allows(host(headers)) {
        return Err(ApiError::field(
            StatusCode::MISDIRECTED_REQUEST,
            "wrong_host",
            "host",
            "this API answers only to its own address (localhost, 127.0.0.1 or [::1] with its port)",
        ));
    }
    let navigation =
        *method == Method::GET && path == "/" && header_str(headers, "sec-fetch-mode").is_none_or(|m| m == "navigate");
    let site = header_str(headers, "sec-fetch-site");
    if !navigation && site.is_some_and(|s| s != "same-origin" && s != "none") {
        return Err(cross_site("sec-fetch-site", "requests from other sites or origins are refused"));
    }
    if let Some(origin) = header_str(headers, header::ORIGIN.as_str()) {
        if !navigation && !hosts.allows_origin(origin) {
            return Err(cross_site("origin", "requests from other origins are refused"));
        }
    }
    let safe = matches!(*method, Method::GET | Method::HEAD);
    if !safe {
        let json = header_str(headers, header::CONTENT_TYPE.as_str())
            .and_then(|ct| ct.split(';').next())
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
        let marked = header_str(headers, CSRF_HEADER) == Some("1");
        if !json && !marked {
            return Err(cross_site(
                "content-type",
                "a state-changing request needs Content-Type: application/json, or the X-Kiosk-CSRF: 1 header (multipart, PDF)",
            ));
        }
    }
    Ok(())
}

fn cross_site(field: &str, message: &str) -> ApiError {
    ApiError::field(StatusCode::FORBIDDEN, "cross_site_refused", field, message)
}

/// The middleware: [`check`], then the answer's protective headers.
pub async fn guard(State(hosts): State<Hosts>, request: Request, next: Next) -> Response {
    let mut response = match check(&hosts, request.method(), request.uri().path(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => {
            tracing::warn!(code = e.code, field = e.field.as_deref().unwrap_or(""), "API request refused");
            e.into_response()
        }
    };
    protect(response.headers_mut());
    response
}

/// The headers every answer carries; a handler's own (the page's CSP) are kept.
fn protect(headers: &mut HeaderMap) {
    let defaults: [(header::HeaderName, &str); 6] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'; sandbox"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::HeaderName::from_static("cross-origin-resource-policy"), "same-origin"),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    /// `check` of one request against a listener on 127.0.0.1:8470: Ok or the refusal's status
    /// and field.
    fn verdict(method: Method, path: &str, pairs: &[(&'static str, &'static str)]) -> Result<(), (u16, String)> {
        let hosts = Hosts::tcp("127.0.0.1:8470".parse().unwrap());
        check(&hosts, &method, path, &headers(pairs)).map_err(|e| (e.status.as_u16(), e.field.unwrap_or_default()))
    }

    #[test]
    fn the_host_must_be_this_listener() {
        let json = ("content-type", "application/json");
        for host in ["127.0.0.1:8470", "localhost:8470", "[::1]:8470", "LOCALHOST:8470"] {
            let h: &'static str = Box::leak(host.to_owned().into_boxed_str());
            assert_eq!(verdict(Method::GET, "/v1/status", &[("host", h)]), Ok(()), "{host}");
            assert_eq!(verdict(Method::POST, "/v1/session", &[("host", h), json]), Ok(()), "{host}");
        }
        for host in ["attacker.example:8470", "127.0.0.1:9999", "localhost", "127.0.0.1", "127.0.0.1.nip.io:8470"] {
            let h: &'static str = Box::leak(host.to_owned().into_boxed_str());
            assert_eq!(verdict(Method::GET, "/v1/status", &[("host", h)]), Err((421, "host".into())), "{host}");
            assert_eq!(verdict(Method::GET, "/", &[("host", h)]), Err((421, "host".into())), "{host}");
        }
        assert_eq!(verdict(Method::GET, "/v1/status", &[]), Err((421, "host".into())));
        let any = Hosts::Any;
        assert!(check(&any, &Method::GET, "/v1/status", &headers(&[("host", "kiosk")])).is_ok());
        // A name of the configuration's, with the port: a fleet's scraper on the VPN.
        let named =
            Hosts::Tcp { listen: "0.0.0.0:8470".parse().unwrap(), names: vec!["kiosk-17.vpn".to_owned()].into() };
        let get = |host: &'static str| check(&named, &Method::GET, "/metrics", &headers(&[("host", host)])).is_ok();
        assert!(get("kiosk-17.vpn:8470") && get("KIOSK-17.VPN:8470") && get("10.8.0.17:8470"));
        assert!(!get("kiosk-17.vpn:9999") && !get("kiosk-18.vpn:8470") && !get("kiosk-17.vpn"));
    }

    #[test]
    fn cross_site_and_cross_origin_requests_are_refused() {
        let host = ("host", "127.0.0.1:8470");
        let json = ("content-type", "application/json");
        let refused = |field: &str| Err((403, field.to_owned()));
        for site in ["cross-site", "same-site"] {
            let s: &'static str = Box::leak(site.to_owned().into_boxed_str());
            let fetch = [host, json, ("sec-fetch-site", s), ("sec-fetch-mode", "no-cors")];
            assert_eq!(verdict(Method::POST, "/v1/enrollments/x/approve", &fetch), refused("sec-fetch-site"));
            let img = [host, ("sec-fetch-site", s), ("sec-fetch-mode", "no-cors"), ("sec-fetch-dest", "image")];
            assert_eq!(verdict(Method::GET, "/v1/cameras/face/preview.mjpg", &img), refused("sec-fetch-site"));
            // A link to the page itself is fine: the page then works on its own origin.
            let nav = [host, ("sec-fetch-site", s), ("sec-fetch-mode", "navigate")];
            assert_eq!(verdict(Method::GET, "/", &nav), Ok(()));
        }
        let same = [host, json, ("sec-fetch-site", "same-origin"), ("origin", "http://127.0.0.1:8470")];
        assert_eq!(verdict(Method::POST, "/v1/enrollments", &same), Ok(()));
        // Browsers without Fetch Metadata: the Origin decides.
        for origin in ["http://127.0.0.1:9999", "null", "https://127.0.0.1:8470", "http://evil.example"] {
            let o: &'static str = Box::leak(origin.to_owned().into_boxed_str());
            assert_eq!(verdict(Method::POST, "/v1/enrollments", &[host, json, ("origin", o)]), refused("origin"));
        }
    }

    #[test]
    fn state_changes_need_json_or_the_csrf_header() {
        let host = ("host", "127.0.0.1:8470");
        for ct in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
            let c: &'static str = Box::leak(ct.to_owned().into_boxed_str());
            assert_eq!(
                verdict(Method::POST, "/v1/enrollments", &[host, ("content-type", c)]),
                Err((403, "content-type".into())),
                "{ct}"
            );
        }
        assert_eq!(verdict(Method::POST, "/v1/enrollments/x/retry", &[host]), Err((403, "content-type".into())));
        assert_eq!(verdict(Method::DELETE, "/v1/session", &[host]), Err((403, "content-type".into())));
        let json = [host, ("content-type", "Application/JSON; charset=utf-8")];
        assert_eq!(verdict(Method::POST, "/v1/enrollments", &json), Ok(()));
        let multipart = [host, ("content-type", "multipart/form-data; boundary=x"), (CSRF_HEADER, "1")];
        assert_eq!(verdict(Method::POST, "/v1/enrollments", &multipart), Ok(()));
        assert_eq!(verdict(Method::GET, "/v1/enrollments", &[host]), Ok(()));
    }

    #[test]
    fn answers_carry_the_protective_headers_and_keep_their_own() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'self'"));
        protect(&mut h);
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert_eq!(h["cross-origin-resource-policy"], "same-origin");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], "default-src 'self'");
    }
}
