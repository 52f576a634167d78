//! Pages built by their scripts, for the rendering tests (the same on
//! every host, under `/js/`):
//! - `app.html`: an empty shell; `app.js` writes its text and its links
//!   (to `a.html` and `b.html`, plain pages).
//! - `plain.html`: its text and a link in the HTML, plus a small script.
//! - `secret.html?port=P`: its script fetches `http://127.0.0.1:P/secret`
//!   and loads it as an image and a script.
//! - `escape.html?to=URL`: its script sends the top frame to `URL`.
//! - `hang.html`: its script `never.js` is never answered.
//! - `slow.html`: its script `slow.js` takes 3 s, then writes its text.
//! - `many.html`: its script asks for `a.html?n=0` .. `a.html?n=49`.
//! - `walls.html?host=H&udp=P&tcp=T`: tries every way out a browser has
//!   besides HTTP: WebRTC (STUN over UDP, TURN over UDP and TCP) to H,
//!   WebTransport and a WebSocket to H:T, a `file:///` iframe and a
//!   DNS-prefetch link, then says "tried".
//! - `bigdom.html?mb=N`: its script builds a DOM of N MB of text (100).
//! - `bigfetch.html`: its script fetches `big.bin` (10 MiB) 100 times at
//!   once and writes how many bytes it got.
//! - `hog.html`: its script allocates without end.
//! - `posts.html?to=URL`: its script POSTs to `URL` 50 times.
//! - `archived.html`: its script fetches `moved.html` (a 301 to
//!   `b.html`) and POSTs `posted=1` to `a.html`.
//! - `tree/<i>.html` (i < [`TREE`]): app shells whose script `tree.js`
//!   writes their text and links to pages 2i+1 and 2i+2 (the bench's
//!   rendered crawl: every page is reached only through a script).

use bytes::Bytes;

const APP: &str = r#"<!doctype html><html><head><title>App</title></head>
<body><div id="root"></div><script src="/js/app.js"></script></body></html>"#;

const APP_JS: &str = r#"document.getElementById('root').innerHTML =
  '<h1>Built by script</h1><p>This text was written by JavaScript.</p>' +
  '<a href="/js/a.html">A</a> <a href="/js/b.html">B</a>';"#;

const SECRET: &str = r#"<!doctype html><html><body><div id="root">waiting</div><script>
const port = new URLSearchParams(location.search).get('port');
const secret = 'http://127.0.0.1:' + port + '/secret';
const img = new Image(); img.src = secret + '.png'; document.body.appendChild(img);
const s = document.createElement('script'); s.src = secret + '.js'; document.body.appendChild(s);
fetch(secret).then(r => r.text()).then(
  t => { document.getElementById('root').textContent = 'got the secret: ' + t; },
  e => { document.getElementById('root').textContent = 'the secret was refused'; });
</script></body></html>"#;

const ESCAPE: &str = r#"<!doctype html><html><body><div id="root">staying</div><script>
const to = new URLSearchParams(location.search).get('to');
document.getElementById('root').textContent = 'about to leave';
location.href = to;
</script></body></html>"#;

const HANG: &str = r#"<!doctype html><html><body><p>loading</p>
<script src="/js/never.js"></script></body></html>"#;

const MANY: &str = r#"<!doctype html><html><body><div id="root"></div><script>
for (let n = 0; n < 50; n++) fetch('/js/a.html?n=' + n).catch(() => {});
document.getElementById('root').textContent = 'asked for 50';
</script></body></html>"#;

const SLOW: &str = r#"<!doctype html><html><body><div id="root"></div>
<script src="/js/slow.js"></script></body></html>"#;

const SLOW_JS: &str = r#"document.getElementById('root').innerHTML = '<p>Slow script done</p>';"#;

const WALLS: &str = r#"<!doctype html><html><head>
<link rel="dns-prefetch" href="//prefetch.example.invalid"></head><body><div id="root">trying</div>
<iframe src="file:///etc/passwd"></iframe><script>
const q = new URLSearchParams(location.search);
const h = q.get('host'), udp = q.get('udp'), tcp = q.get('tcp');
const tries = [];
try {
  const pc = new RTCPeerConnection({iceServers: [
    {urls: 'stun:' + h + ':' + udp},
    {urls: ['turn:' + h + ':' + udp + '?transport=udp', 'turn:' + h + ':' + tcp + '?transport=tcp'], username: 'u', credential: 'p'}]});
  pc.createDataChannel('x');
  tries.push(pc.createOffer().then(o => pc.setLocalDescription(o)).then(() => new Promise(r => setTimeout(r, 1500))));
} catch (e) {}
try { new WebTransport('https://' + h + ':' + tcp + '/wt'); } catch (e) {}
try { new WebSocket('ws://' + h + ':' + tcp + '/ws'); } catch (e) {}
Promise.allSettled(tries).then(() => { document.getElementById('root').textContent = 'tried'; });
</script></body></html>"#;

const BIGDOM: &str = r#"<!doctype html><html><body><div id="root"></div><script>
const mb = Number(new URLSearchParams(location.search).get('mb') || 100);
document.getElementById('root').textContent = 'x'.repeat(mb * 1000 * 1000);
</script></body></html>"#;

const BIGFETCH: &str = r#"<!doctype html><html><body><div id="root">fetching</div><script>
let got = 0;
const all = [];
for (let n = 0; n < 100; n++) all.push(fetch('/js/big.bin?n=' + n).then(r => r.arrayBuffer()).then(b => { got += b.byteLength; }, () => {}));
Promise.allSettled(all).then(() => { document.getElementById('root').textContent = 'received ' + got + ' bytes'; });
</script></body></html>"#;

const HOG: &str = r#"<!doctype html><html><body><div id="root">hogging</div><script>
const keep = [];
for (;;) keep.push(new Array(1 << 20).fill(keep.length));
</script></body></html>"#;

const POSTS: &str = r#"<!doctype html><html><body><div id="root"></div><script>
const to = new URLSearchParams(location.search).get('to');
for (let n = 0; n < 50; n++) fetch(to, {method: 'POST', body: 'n=' + n, mode: 'no-cors'}).catch(() => {});
document.getElementById('root').textContent = 'posted 50';
</script></body></html>"#;

const ARCHIVED: &str = r#"<!doctype html><html><body><div id="root"></div><script>
Promise.all([
  fetch('/js/moved.html').then(r => r.text()),
  fetch('/js/a.html', {method: 'POST', body: 'posted=1'}).then(r => r.text()),
]).then(([m]) => { document.getElementById('root').textContent = 'fetched ' + m.length; });
</script></body></html>"#;

/// Where a scripted path redirects (301): `moved.html` to `b.html`.
pub fn moved(path: &str) -> Option<&'static str> {
    (path == "/js/moved.html").then_some("/js/b.html")
}

/// The body of `big.bin`.
pub const BIG: usize = 10 << 20;

/// Pages of the scripted tree.
pub const TREE: usize = 300;

const TREE_JS: &str = r#"const i = parseInt(location.pathname.split('/').pop(), 10);
let html = '<h1>Page ' + i + '</h1><p>' + 'Text written by the page script. '.repeat(40) + '</p>';
for (const c of [2 * i + 1, 2 * i + 2]) if (c < TREE) html += '<a href="/js/tree/' + c + '.html">page ' + c + '</a> ';
document.getElementById('root').innerHTML = html;"#;

fn tree_page(path: &str) -> Option<String> {
    let i: usize = path
        .strip_prefix("tree/")?
        .strip_suffix(".html")?
        .parse()
        .ok()?;
    (i < TREE).then(|| {
        format!("<!doctype html><html><head><title>{i}</title></head><body><div id=\"root\"></div><script src=\"/js/tree.js\"></script></body></html>")
    })
}

fn plain(name: &str) -> String {
    let text = format!("Plain page {name}, written on the server. ").repeat(20);
    format!("<!doctype html><html><body><p>{text}</p><a href=\"/js/a.html\">A</a><script>var x = 1;</script></body></html>")
}

/// A scripted page: its content type and body.
pub fn page(path: &str) -> Option<(&'static str, Bytes)> {
    let html = "text/html; charset=utf-8";
    let name = path.strip_prefix("/js/")?;
    if name == "tree.js" {
        let js = format!("const TREE = {TREE};\n{TREE_JS}");
        return Some(("application/javascript", Bytes::from(js)));
    }
    if let Some(page) = tree_page(name) {
        return Some((html, Bytes::from(page)));
    }
    let body = match name {
        "app.html" => APP.to_string(),
        "app.js" => {
            return Some((
                "application/javascript",
                Bytes::from_static(APP_JS.as_bytes()),
            ))
        }
        "plain.html" => plain("plain"),
        "a.html" => plain("A"),
        "b.html" => plain("B"),
        "secret.html" => SECRET.to_string(),
        "escape.html" => ESCAPE.to_string(),
        "hang.html" => HANG.to_string(),
        "slow.html" => SLOW.to_string(),
        "many.html" => MANY.to_string(),
        "walls.html" => WALLS.to_string(),
        "bigdom.html" => BIGDOM.to_string(),
        "bigfetch.html" => BIGFETCH.to_string(),
        "hog.html" => HOG.to_string(),
        "posts.html" => POSTS.to_string(),
        "archived.html" => ARCHIVED.to_string(),
        "big.bin" => return Some(("application/octet-stream", Bytes::from(vec![b'a'; BIG]))),
        "slow.js" => {
            return Some((
                "application/javascript",
                Bytes::from_static(SLOW_JS.as_bytes()),
            ))
        }
        "never.js" => return Some(("application/javascript", Bytes::new())),
        _ => return None,
    };
    Some((html, Bytes::from(body)))
}

/// How long a scripted resource takes to answer: `never.js` an hour
/// (never, within a test's life), `slow.js` 3 s.
pub fn delay(path: &str) -> Option<std::time::Duration> {
    match path {
        "/js/never.js" => Some(std::time::Duration::from_secs(3600)),
        "/js/slow.js" => Some(std::time::Duration::from_secs(3)),
        _ => None,
    }
}
