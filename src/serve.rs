//! `celnet serve`: serves the browser client (index.html, www/, pkg/) from a folder on this
//! machine, with the MIME types, Content-Security-Policy and isolation headers it needs, and
//! the wasm's precompressed copies (brotli or gzip) to browsers that accept them.
//!
//! Images never reach this server: the page computes everything in the browser. It only hands
//! out the page's own static files, by default on the loopback interface.

use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};

use tiny_http::{Header, Method, Request, Response, Server, StatusCode};

use crate::error::{CelnetError, Result};

/// The page's Content-Security-Policy: nothing but its own origin, WebAssembly allowed, no
/// inline scripts or styles. `index.html` carries the same policy in a meta tag (less
/// `frame-ancestors`, which meta tags cannot set) for servers that send no headers.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; worker-src 'self'; \
     font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Files that must exist before the page can work.
const REQUIRED: [&str; 5] = [
    "index.html",
    "pkg/celnet.js",
    "pkg/celnet_bg.wasm",
    "pkg/celnet_relaxed_bg.wasm",
    "weights/celnet-pcam.bpk",
];

/// Serves `root` on `address` (e.g. `127.0.0.1:8080`) until the process ends.
/// `on_ready` gets the bound address once the socket is listening.
pub fn serve(root: &Path, address: &str, on_ready: impl FnOnce(&str)) -> Result<()> {
    check_root(root)?;
    let server = Server::http(address)
        .map_err(|e| CelnetError::Serve(format!("cannot listen on {address}: {e}")))?;
    let bound = server
        .server_addr()
        .to_ip()
        .map_or_else(|| address.to_string(), |a| a.to_string());
    on_ready(&bound);
    for request in server.incoming_requests() {
        if let Err(e) = respond(root, request) {
            eprintln!("serve: {e}");
        }
    }
    Ok(())
}

/// Fails with a clear message when `root` lacks the page or the generated wasm bindings.
pub fn check_root(root: &Path) -> Result<()> {
    for file in REQUIRED {
        if !root.join(file).is_file() {
            return Err(CelnetError::Serve(format!(
                "{} is missing: build the browser client first (scripts/start.sh builds it), \
                 or pass --root with the folder that holds index.html, pkg/ and weights/",
                root.join(file).display()
            )));
        }
    }
    Ok(())
}

/// The file a request path names under `root`: `/` is `index.html`; query strings and
/// fragments are ignored; anything that would leave `root` (`..`, absolute parts) or names a
/// hidden file is refused.
pub fn resolve(root: &Path, url: &str) -> Option<PathBuf> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let path = if path.is_empty() || path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_string()
    };
    let relative = Path::new(path.trim_start_matches('/'));
    let safe = relative.components().all(|c| match c {
        Component::Normal(part) => !part.to_string_lossy().starts_with('.'),
        _ => false,
    });
    safe.then(|| root.join(relative))
}

/// The MIME type for a file name (`application/wasm` matters: streaming compilation needs it).
pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "wasm" => "application/wasm",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "webmanifest" => "application/manifest+json",
        "bpk" => "application/octet-stream",
        "md" | "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Headers sent with every response.
pub fn security_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
        // Cross-origin isolation: precise timers for the bench page, and nothing foreign loads.
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Cross-Origin-Embedder-Policy", "require-corp"),
        ("Cross-Origin-Resource-Policy", "same-origin"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        // Revalidate every time: the service worker keeps the offline copy.
        ("Cache-Control", "no-cache"),
    ]
}

fn respond(root: &Path, request: Request) -> io::Result<()> {
    let status = |code: u16, text: &str| {
        Response::from_string(text)
            .with_status_code(StatusCode(code))
            .with_header(header("Content-Type", "text/plain; charset=utf-8"))
    };
    if !matches!(request.method(), Method::Get | Method::Head) {
        let response = status(405, "only GET and HEAD are served\n");
        return request.respond(with_security_headers(response));
    }
    let Some(path) = resolve(root, request.url()) else {
        return request.respond(with_security_headers(status(404, "not found\n")));
    };
    if !path.is_file() {
        return request.respond(with_security_headers(status(404, "not found\n")));
    }
    let accepted = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Accept-Encoding"))
        .map(|h| h.value.to_string())
        .unwrap_or_default();
    let variants = precompressed_variants(&path);
    let chosen = variants
        .iter()
        .find(|(encoding, _)| accepts_encoding(&accepted, encoding));
    let (file, encoding) = match chosen {
        Some((encoding, file)) => (file.clone(), Some(*encoding)),
        None => (path.clone(), None),
    };
    match File::open(&file) {
        Ok(opened) => {
            let mut response = Response::from_file(opened)
                .with_header(header("Content-Type", content_type(&path)));
            if let Some(encoding) = encoding {
                response.add_header(header("Content-Encoding", encoding));
            }
            if !variants.is_empty() {
                // Caches must keep the encodings apart.
                response.add_header(header("Vary", "Accept-Encoding"));
            }
            request.respond(with_security_headers(response))
        }
        Err(_) => request.respond(with_security_headers(status(404, "not found\n"))),
    }
}

/// Compressed copies of `path` made when the page was built (`celnet_bg.wasm.br`, `.gz`), best
/// first, as `(Content-Encoding, file)`. A copy older than the file is stale and ignored.
pub fn precompressed_variants(path: &Path) -> Vec<(&'static str, PathBuf)> {
    let modified = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    [("br", "br"), ("gzip", "gz")]
        .into_iter()
        .filter_map(|(encoding, extension)| {
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".{extension}"));
            let variant = PathBuf::from(name);
            let fresh = variant.is_file() && modified(&variant) >= modified(path);
            fresh.then_some((encoding, variant))
        })
        .collect()
}

/// Whether an `Accept-Encoding` header value accepts `encoding` (listed, or `*`, and not with
/// `q=0`).
pub fn accepts_encoding(header: &str, encoding: &str) -> bool {
    header.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        (name.eq_ignore_ascii_case(encoding) || name == "*") && !refused
    })
}

fn with_security_headers<R: io::Read>(mut response: Response<R>) -> Response<R> {
    for (name, value) in security_headers() {
        response.add_header(header(name, value));
    }
    response
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        let root = Path::new("/srv/app");
        assert_eq!(resolve(root, "/"), Some(root.join("index.html")));
        assert_eq!(
            resolve(root, "/index.html?backend=cpu"),
            Some(root.join("index.html"))
        );
        assert_eq!(
            resolve(root, "/pkg/celnet_bg.wasm"),
            Some(root.join("pkg/celnet_bg.wasm"))
        );
        assert_eq!(resolve(root, "/www/"), Some(root.join("www/index.html")));
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/www/../../etc/passwd"), None);
        assert_eq!(resolve(root, "/.git/config"), None);
    }

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        assert!(accepts_encoding("gzip, deflate, br, zstd", "br"));
        assert!(accepts_encoding("GZIP", "gzip"));
        assert!(accepts_encoding("*", "br"));
        assert!(accepts_encoding("br;q=0.5", "br"));
        assert!(!accepts_encoding("br;q=0, gzip", "br"));
        assert!(!accepts_encoding("br; q=0.0", "br"));
        assert!(!accepts_encoding("gzip", "br"));
        assert!(!accepts_encoding("", "gzip"));
        assert!(!accepts_encoding("brotli", "br"));
    }

    #[test]
    fn wasm_and_scripts_have_their_mime_types() {
        assert_eq!(content_type(Path::new("a/b.wasm")), "application/wasm");
        assert!(content_type(Path::new("app.js")).starts_with("text/javascript"));
        assert!(content_type(Path::new("index.html")).starts_with("text/html"));
    }

    #[test]
    fn the_pages_meta_policies_match_the_served_one() {
        // The meta tags keep the policy when the pages are served by another web server.
        let served = CONTENT_SECURITY_POLICY.replace("; frame-ancestors 'none'", "");
        for (name, page) in [
            ("index.html", include_str!("../index.html")),
            ("www/bench.html", include_str!("../www/bench.html")),
        ] {
            assert!(
                page.contains(&served),
                "{name}'s Content-Security-Policy meta tag must read: {served}"
            );
        }
    }
}
