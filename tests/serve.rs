//! `celnet serve` over real HTTP: MIME types, security headers, path confinement, and a clear
//! error when the page has not been built.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

struct Server {
    child: Child,
    address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn site(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("pkg")).unwrap();
    std::fs::create_dir_all(root.join("weights")).unwrap();
    std::fs::write(root.join("index.html"), "<!doctype html><title>t</title>").unwrap();
    std::fs::write(root.join("pkg/celnet.js"), "export default 1;").unwrap();
    std::fs::write(root.join("pkg/celnet_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(root.join("pkg/celnet_relaxed_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(root.join("weights/celnet-pcam.bpk"), b"BURNPACK").unwrap();
    std::fs::write(root.join(".secret"), "hidden").unwrap();
    root
}

fn start(root: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_celnet"))
        .args(["serve", "--port", "0", "--root"])
        .arg(root)
        .stdout(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    Server { child, address }
}

type Reply = (String, Vec<(String, String)>, Vec<u8>);

/// Status line, lower-cased headers and body of one request.
fn request(server: &Server, method: &str, path: &str) -> Reply {
    request_with(server, method, path, "")
}

/// [`request`] with extra header lines (each ending in `\r\n`).
fn request_with(server: &Server, method: &str, path: &str, extra: &str) -> Reply {
    let mut stream = TcpStream::connect(&server.address).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\n{extra}Connection: close\r\n\r\n",
        server.address
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn serves_the_page_with_its_headers() {
    let server = start(&site("serve-ok"));

    let (status, headers, body) = request(&server, "GET", "/?backend=cpu");
    assert!(status.contains("200"), "{status}");
    assert!(
        header(&headers, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(body, b"<!doctype html><title>t</title>");
    let csp = header(&headers, "content-security-policy").unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("'wasm-unsafe-eval'"));
    assert_eq!(
        header(&headers, "cross-origin-opener-policy"),
        Some("same-origin")
    );
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));

    let (status, headers, body) = request(&server, "GET", "/pkg/celnet_bg.wasm");
    assert!(status.contains("200"), "{status}");
    assert_eq!(header(&headers, "content-type"), Some("application/wasm"));
    assert_eq!(body, b"\0asm\x01\0\0\0");

    // The page fetches the default weights beside the wasm.
    let (status, headers, body) = request(&server, "GET", "/weights/celnet-pcam.bpk");
    assert!(status.contains("200"), "{status}");
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(body, b"BURNPACK");

    for path in [
        "/missing.js",
        "/../Cargo.toml",
        "/pkg/../../Cargo.toml",
        "/.secret",
    ] {
        let (status, _, _) = request(&server, "GET", path);
        assert!(status.contains("404"), "{path}: {status}");
    }
    let (status, _, _) = request(&server, "POST", "/");
    assert!(status.contains("405"), "{status}");
}

#[test]
fn the_wasm_goes_out_precompressed_to_browsers_that_accept_it() {
    let root = site("serve-compressed");
    // Stand-ins for the copies scripts/build-web.sh writes beside the wasm.
    std::fs::write(root.join("pkg/celnet_bg.wasm.br"), "brotli bytes").unwrap();
    std::fs::write(root.join("pkg/celnet_bg.wasm.gz"), "gzip bytes").unwrap();
    let server = start(&root);
    let get = |accept: &str| {
        let extra = if accept.is_empty() {
            String::new()
        } else {
            format!("Accept-Encoding: {accept}\r\n")
        };
        let (status, headers, body) = request_with(&server, "GET", "/pkg/celnet_bg.wasm", &extra);
        assert!(status.contains("200"), "{accept}: {status}");
        assert_eq!(header(&headers, "content-type"), Some("application/wasm"));
        assert_eq!(
            header(&headers, "vary"),
            Some("Accept-Encoding"),
            "{accept}"
        );
        let encoding = header(&headers, "content-encoding").map(str::to_string);
        (encoding, body)
    };
    let brotli = (Some("br".to_string()), b"brotli bytes".to_vec());
    let gzip = (Some("gzip".to_string()), b"gzip bytes".to_vec());
    let plain = (None, b"\0asm\x01\0\0\0".to_vec());
    assert_eq!(get("gzip, deflate, br, zstd"), brotli);
    assert_eq!(get("gzip"), gzip);
    assert_eq!(get("br;q=0, gzip;q=0.8"), gzip);
    assert_eq!(get("identity"), plain);
    assert_eq!(get(""), plain);

    // Files without compressed copies go out as they are, with no Vary.
    let (_, headers, _) = request_with(&server, "GET", "/index.html", "Accept-Encoding: br\r\n");
    assert_eq!(header(&headers, "content-encoding"), None);
    assert_eq!(header(&headers, "vary"), None);

    // A wasm rebuilt after its copies were made: the stale copies are not served.
    // (A second apart: some file systems keep whole seconds.)
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(root.join("pkg/celnet_bg.wasm"), b"\0asm\x01\0\0\0new").unwrap();
    let (_, headers, body) = request_with(
        &server,
        "GET",
        "/pkg/celnet_bg.wasm",
        "Accept-Encoding: br\r\n",
    );
    assert_eq!(header(&headers, "content-encoding"), None);
    assert_eq!(body, b"\0asm\x01\0\0\0new");
}

#[test]
fn an_unbuilt_page_is_a_clear_error() {
    let root = site("serve-unbuilt");
    std::fs::remove_file(root.join("pkg/celnet_bg.wasm")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_celnet"))
        .args(["serve", "--port", "0", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("celnet_bg.wasm is missing") && stderr.contains("scripts/start.sh"),
        "{stderr}"
    );
}
