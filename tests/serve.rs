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
    std::fs::write(root.join("index.html"), "<!doctype html><title>t</title>").unwrap();
    std::fs::write(root.join("pkg/celnet.js"), "export default 1;").unwrap();
    std::fs::write(root.join("pkg/celnet_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
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

/// Status line, lower-cased headers and body of one request.
fn request(server: &Server, method: &str, path: &str) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(&server.address).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
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
