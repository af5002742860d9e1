//! The console's static files, embedded in the binary (nothing to build or install). Each file is a
//! route of its own in the route table (public: the data behind the pages is guarded by the API).
//! Responses carry the console's security headers and an ETag (revalidated on every load).

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use once_cell::sync::Lazy;
use sha2::{Digest, Sha256};

use crate::http::routes::{Access, Api};

/// The console's Content-Security-Policy: scripts, styles and everything else from this origin only;
/// no inline script or style, no plugins, no framing, no `<base>`, forms post here only. `img-src`
/// allows `data:` and `blob:` for previews of uploaded merchant documents (fetched, then shown from a
/// blob URL), as does `frame-src` for PDF previews.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
frame-src blob:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

macro_rules! assets {
    ($($file:literal => $ct:literal),* $(,)?) => {
        &[$(($file, $ct, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $file)).as_slice())),*]
    };
}

/// (path under /console/, content type, bytes).
pub static ASSETS: &[(&str, &str, &[u8])] = assets! {
    "index.html" => "text/html; charset=utf-8",
    "console.css" => "text/css; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
    "js/app.js" => "text/javascript; charset=utf-8",
    "js/api.js" => "text/javascript; charset=utf-8",
    "js/ui.js" => "text/javascript; charset=utf-8",
    "js/auth.js" => "text/javascript; charset=utf-8",
    "js/cardholder.js" => "text/javascript; charset=utf-8",
    "js/merchant.js" => "text/javascript; charset=utf-8",
    "js/admin.js" => "text/javascript; charset=utf-8",
};

/// ETags: a content hash of each file, computed once.
static ETAGS: Lazy<Vec<String>> = Lazy::new(|| {
    ASSETS.iter().map(|(_, _, body)| format!("\"{}\"", &hex::encode(Sha256::digest(body))[..20])).collect()
});

pub fn register(api: &mut Api) {
    for (i, (file, _, _)) in ASSETS.iter().enumerate() {
        let mut paths = vec![format!("/console/{file}")];
        if *file == "index.html" {
            paths = vec!["/console".to_owned(), "/console/".to_owned()];
        }
        for path in paths {
            let (r, _) = api.route(
                Method::GET,
                &path,
                Access::Public,
                "console",
                "Console asset (embedded)",
                web::get().to(move |req: HttpRequest| async move { serve(&req, i) }),
            );
            r.undocumented().infallible();
        }
    }
}

/// Adds the console's security headers to a response.
pub fn secure(resp: &mut HttpResponse) {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    h.insert(
        header::HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
}

fn serve(req: &HttpRequest, i: usize) -> HttpResponse {
    let (_, content_type, body) = ASSETS[i];
    let etag = &ETAGS[i];
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = if fresh {
        HttpResponse::NotModified().finish()
    } else {
        HttpResponse::Ok().content_type(content_type).body(body)
    };
    secure(&mut resp);
    let h = resp.headers_mut();
    // Revalidate every time (cheap: 304 by ETag), so a new binary's files are used at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    resp
}
