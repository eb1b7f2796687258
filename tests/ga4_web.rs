//! GA4 in the browser through scrim (`preset: ga4_web`): real gtag.js hits
//! (`tests/data/ga4_web/`) sent through the running proxy to a mock
//! upstream. One test per point of the CNIL's guidance for an analytics
//! proxy, each failing when its point is broken; then rotation, cookies
//! and the script route.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;

use support::{Mock, Recorded, Scrim, send};

const GTAG_JS: &[u8] = b"(function(){/* gtag.js */var dataLayer=window.dataLayer||[];})();\n";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/data/ga4_web/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Answers as Google does: the script for `/gtag/js`, 204 for a hit; and
/// always a cookie, which must not reach the browser.
fn google(request: &Recorded) -> Response<Full<Bytes>> {
    let script = request.uri.starts_with("/gtag/js");
    let mut response = Response::new(Full::new(if script {
        Bytes::from_static(GTAG_JS)
    } else {
        Bytes::new()
    }));
    if script {
        response.headers_mut().insert(
            "content-type",
            "application/javascript; charset=UTF-8".parse().unwrap(),
        );
    } else {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    for cookie in [
        "NID=511=abc; expires=Sat, 05-Jun-2027 00:00:00 GMT; path=/; domain=.google.com",
        "_ga=GA1.1.99.1733340000; Max-Age=63072000; Path=/",
    ] {
        response
            .headers_mut()
            .append("set-cookie", cookie.parse().unwrap());
    }
    response
}

struct Site {
    scrim: Scrim,
    google: Mock,
}

async fn start_site(extra_rules: &str) -> Site {
    start_site_with(extra_rules, "").await
}

/// With more rules for the GA4 route, and more of its settings (lines of
/// YAML at the route's indentation).
async fn start_site_with(extra_rules: &str, settings: &str) -> Site {
    let google = Mock::start_answering(Duration::ZERO, None, google).await;
    let yaml = format!(
        "routes:
  - name: ga4
    match: {{path_prefix: /metrics}}
    strip_prefix: true
    upstream: {url}
    preset: ga4_web
    site: [shop.example, www.shop.example]
    rules: [{extra_rules}]
{settings}  - name: gtag
    match: {{path_prefix: /gtag/}}
    upstream: {url}
    browser: true
    rules:
      - {{select: header.referer, action: drop}}
      - {{select: header.user-agent, action: generalize_user_agent}}
      - {{select: header.accept-language, action: drop}}
",
        url = google.url()
    );
    Site {
        scrim: Scrim::start(&yaml).await,
        google,
    }
}

/// The browser's headers on a request from the checkout page.
fn browser_headers() -> Vec<(String, String)> {
    fixture("headers.txt")
        .lines()
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

impl Site {
    /// Sends a hit as the browser does; what the upstream got, and the
    /// browser's response.
    async fn hit(
        &self,
        query: &str,
        body: Option<&str>,
    ) -> (Recorded, (StatusCode, HeaderMap, Bytes)) {
        let before = self.google.requests().len();
        let method = if body.is_some() { "POST" } else { "GET" };
        let mut request = Request::builder()
            .method(method)
            .uri(self.scrim.url(&format!("/metrics/g/collect?{query}")));
        for (name, value) in browser_headers() {
            request = request.header(name, value);
        }
        if body.is_some() {
            request = request.header("content-type", "text/plain;charset=UTF-8");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default().to_owned())))
            .unwrap();
        let response = send(request).await;
        let requests = self.google.requests();
        assert_eq!(
            requests.len(),
            before + 1,
            "one hit forwarded: {response:?}"
        );
        (requests[before].clone(), response)
    }

    async fn page_view(&self) -> Recorded {
        self.hit(&fixture("page_view.query"), None).await.0
    }
}

/// The upstream query's parameters, decoded.
fn params(recorded: &Recorded) -> BTreeMap<String, String> {
    let query = recorded.uri.split_once('?').map_or("", |(_, q)| q);
    pairs(query)
}

fn pairs(text: &str) -> BTreeMap<String, String> {
    form_urlencoded::parse(text.as_bytes())
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

fn body_lines(recorded: &Recorded) -> Vec<BTreeMap<String, String>> {
    std::str::from_utf8(&recorded.body)
        .unwrap()
        .split('\n')
        .map(|line| pairs(line.trim_end_matches('\r')))
        .collect()
}

/// Everything the upstream received, as text: the request line, every
/// header and the body, decoded once more so that an encoded leak shows.
fn everything(recorded: &Recorded) -> String {
    let mut all = recorded.uri.clone();
    for (name, value) in &recorded.headers {
        all.push_str(&format!(
            "\n{name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    all.push('\n');
    all.push_str(&String::from_utf8_lossy(&recorded.body));
    let decoded: String = form_urlencoded::parse(all.as_bytes())
        .map(|(name, value)| format!("{name}={value}\n"))
        .collect();
    format!("{all}\n{decoded}")
}

#[tokio::test]
async fn cnil_1_no_visitor_ip_reaches_the_platform() {
    let site = start_site("").await;
    let recorded = site.page_view().await;
    assert!(!params(&recorded).contains_key("_uip"), "{}", recorded.uri);
    for header in [
        "x-forwarded-for",
        "forwarded",
        "x-real-ip",
        "cf-connecting-ip",
        "true-client-ip",
        "x-client-ip",
    ] {
        assert!(!recorded.headers.contains_key(header), "{header}");
    }
    let (batched, _) = site
        .hit(&fixture("batch.query"), Some(&fixture("batch.body")))
        .await;
    assert!(
        body_lines(&batched)
            .iter()
            .all(|line| !line.contains_key("_uip"))
    );
    assert!(!everything(&recorded).contains("203.0.113.77"));
    assert!(!everything(&batched).contains("203.0.113.77"));
}

#[tokio::test]
async fn cnil_2_scrim_makes_the_identifiers() {
    let site = start_site("").await;
    let first = params(&site.page_view().await);
    let original = pairs(&fixture("page_view.query"));
    let cid = &first["cid"];
    assert_ne!(cid, &original["cid"]);
    let (random, timestamp) = cid.split_once('.').expect("a GA client id has two halves");
    assert!(
        random.parse::<u32>().is_ok() && timestamp.len() == 10,
        "{cid}"
    );
    assert!(timestamp.parse::<u64>().is_ok(), "{cid}");
    assert_ne!(first["sid"], original["sid"]);
    assert!(first["sid"].len() == 10 && first["sid"].parse::<u64>().is_ok());
    assert_ne!(first["_fid"], original["_fid"]);
    assert!(!first.contains_key("uid"));
    // Within a period the same visitor keeps one pseudonym, in the query
    // of a batch as in a single hit.
    let (batched, _) = site
        .hit(&fixture("batch.query"), Some(&fixture("batch.body")))
        .await;
    assert_eq!(&params(&batched)["cid"], cid);
    assert!(
        body_lines(&batched)
            .iter()
            .all(|line| !line.contains_key("uid"))
    );
    assert!(!everything(&batched).contains("cust-00042"));
    assert!(!everything(&batched).contains("1873456721"));
    // A form body is read as a line of the same parameters; a body the
    // route's rules cannot read is refused.
    let form = Request::post(site.scrim.url("/metrics/g/collect?v=2"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(b"en=a&cid=111.222&uid=7")))
        .unwrap();
    assert_eq!(send(form).await.0, StatusCode::NO_CONTENT);
    let lines = body_lines(&site.google.requests().pop().unwrap());
    assert!(!lines[0].contains_key("uid") && lines[0]["cid"] != "111.222");
    let json = Request::post(site.scrim.url("/metrics/g/collect?v=2"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"cid":"111.222"}"#)))
        .unwrap();
    assert_eq!(send(json).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn cnil_3_a_referrer_from_outside_the_site_goes() {
    let site = start_site("").await;
    let recorded = site.page_view().await;
    assert!(!params(&recorded).contains_key("dr"), "{}", recorded.uri);
    assert!(!everything(&recorded).contains("mail.example.net"));
    let (batched, _) = site
        .hit(&fixture("batch.query"), Some(&fixture("batch.body")))
        .await;
    assert!(
        !params(&batched).contains_key("dr"),
        "facebook.example is outside"
    );
    // A referrer inside the site stays, cut to its path.
    let purchase = params(&site.hit(&fixture("purchase.query"), None).await.0);
    assert_eq!(purchase["dr"], "https://shop.example/checkout");
    assert_eq!(
        recorded.headers["referer"].to_str().unwrap(),
        "https://shop.example/checkout"
    );
}

#[tokio::test]
async fn cnil_4_collected_urls_lose_their_parameters() {
    let site = start_site("").await;
    let recorded = site.page_view().await;
    let sent = params(&recorded);
    assert_eq!(sent["dl"], "https://shop.example/checkout");
    let purchase = params(&site.hit(&fixture("purchase.query"), None).await.0);
    assert_eq!(purchase["dl"], "https://shop.example/thanks");
    let all = everything(&recorded);
    for leaked in ["utm_", "email=", "gclid", "step-2", "black-friday"] {
        assert!(
            !all.contains(leaked),
            "{leaked} reached the platform:\n{all}"
        );
    }
    // Path parameters go, and what stays of a URL is scanned a segment at
    // a time: a number that fills one is found.
    let odd = "v=2&cid=1.2&en=page_view&dl=https%3A%2F%2Fshop.example%2Fu%2F4111111111111111%2Fcart%3Bjsessionid%3D8F2C1E9A%2Fsearch%2F%252B33612345678&dt=https%3A%2F%2Fshop.example%2Fcart%3Futm_source%3Dx";
    let sent = params(&site.hit(odd, None).await.0);
    assert_eq!(
        sent["dl"],
        "https://shop.example/u/%5Bcard%5D/cart/search/%5Bphone%5D"
    );
    assert_eq!(
        sent["dt"], "https://shop.example/cart",
        "a title that is a URL"
    );
    // A scroll on a blog post reached from a newsletter: the post's path
    // stays, the campaign goes; the referrer is the site's own home.
    let scroll = params(&site.hit(&fixture("scroll.query"), None).await.0);
    assert_eq!(scroll["dl"], "https://shop.example/blog/winter-boots");
    assert_eq!(scroll["dr"], "https://shop.example/");
    assert_eq!(scroll["epn.percent_scrolled"], "90");
    // A URL with nothing to cut is still read a segment at a time.
    let (recorded, _) = site
        .hit(
            "v=2&cid=1.2&en=page_view&dl=https%3A%2F%2Fshop.example%2Fu%2F4111111111111111",
            None,
        )
        .await;
    assert_eq!(params(&recorded)["dl"], "https://shop.example/u/%5Bcard%5D");
    // An outbound link loses its query like the page's own URL.
    let purchase = params(&site.hit(&fixture("purchase.query"), None).await.0);
    assert_eq!(purchase["ep.link_url"], "https://mail.example.net/inbox");
    // A route may keep a parameter it needs.
    let keeping = start_site_with("", "    keep_params: [utm_campaign]\n").await;
    let kept = params(&keeping.page_view().await);
    assert_eq!(
        kept["dl"],
        "https://shop.example/checkout?utm_campaign=black-friday"
    );
}

#[tokio::test]
async fn cnil_5_what_feeds_fingerprinting_is_reprocessed() {
    let site = start_site("").await;
    let recorded = site.page_view().await;
    assert_eq!(
        recorded.headers["user-agent"].to_str().unwrap(),
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
    );
    let sent = params(&recorded);
    for hint in ["uaa", "uab", "uafvl", "uam", "uamb", "uap", "uapv", "uaw"] {
        assert!(!sent.contains_key(hint), "{hint}");
    }
    for header in [
        "sec-ch-ua-full-version-list",
        "sec-ch-ua-model",
        "sec-ch-ua-platform-version",
        "sec-ch-ua-arch",
        "sec-ch-ua-bitness",
        "accept-language",
    ] {
        assert!(!recorded.headers.contains_key(header), "{header}");
    }
    assert_eq!(sent["sr"], "1440x900");
    let all = everything(&recorded);
    for leaked in ["6778.86", "14.6.1", "1512x982", "de;q=0.8"] {
        assert!(!all.contains(leaked), "{leaked} reached the platform");
    }
}

#[tokio::test]
async fn cnil_6_no_cross_site_or_persistent_identifier() {
    let site = start_site("").await;
    let (recorded, (status, headers, _)) = site.hit(&fixture("page_view.query"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        !recorded.headers.contains_key("cookie"),
        "the site's cookies stay home"
    );
    assert!(
        !headers.contains_key("set-cookie"),
        "no cookie of Google's is set"
    );
    let sent = params(&recorded);
    assert!(
        !sent.contains_key("sct"),
        "the session count links the days"
    );
    let all = everything(&recorded);
    for leaked in ["sess-8f2c1e9a", "_ga=", "Cj0KCQiA", "GS1.1"] {
        assert!(!all.contains(leaked), "{leaked} reached the platform");
    }
}

#[tokio::test]
async fn cnil_7_anything_else_that_identifies_is_removed() {
    let site = start_site("").await;
    let purchase = site.hit(&fixture("purchase.query"), None).await.0;
    let sent = params(&purchase);
    assert_eq!(sent["ep.customer_email"], "[email]");
    assert_eq!(sent["up.phone"], "[phone]");
    // What analytics needs is there, as it was.
    let original = pairs(&fixture("purchase.query"));
    for kept in [
        "en",
        "tid",
        "cu",
        "pr1",
        "pr2",
        "epn.value",
        "ep.transaction_id",
        "ep.coupon",
    ] {
        assert_eq!(sent[kept], original[kept], "{kept}");
    }
    let page = params(&site.page_view().await);
    assert_eq!(page["dt"], "Checkout for [email]");
    let (batched, (status, _, _)) = site
        .hit(&fixture("batch.query"), Some(&fixture("batch.body")))
        .await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "sendBeacon's batch is answered"
    );
    let lines = body_lines(&batched);
    assert_eq!(lines.len(), 3, "one hit per line still");
    assert_eq!(lines[1]["ep.gift_note"], "for Jane, call [phone]");
    assert_eq!(lines[0]["en"], "view_item");
    for recorded in [&purchase, &batched] {
        let all = everything(recorded);
        for leaked in ["jane.doe", "650 555 1212", "+1 650"] {
            assert!(
                !all.contains(leaked),
                "{leaked} reached the platform:\n{all}"
            );
        }
    }
}

/// With a period of 2 s, a visitor's pseudonym is the same throughout a
/// period and unrelated in the next. Each hit is placed in its period by
/// the clock read before and after it (a hit that straddles a boundary is
/// left out): one token per period, a key id of its own for each.
#[tokio::test]
async fn pseudonyms_rotate_with_the_period() {
    let site = start_site("{select: query.cid, action: hmac, rotate: 2s}").await;
    let period = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 2
    };
    let mut by_period: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let started = Instant::now();
    while by_period.len() < 3 && started.elapsed() < Duration::from_secs(12) {
        let before = period();
        let recorded = site.page_view().await;
        if period() == before {
            let token = params(&recorded)["cid"].clone();
            by_period.entry(before).or_default().push(token);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(by_period.len() >= 3, "three periods seen: {by_period:?}");
    let mut firsts: Vec<(String, String)> = Vec::new();
    for tokens in by_period.values() {
        assert!(
            tokens.windows(2).all(|w| w[0] == w[1]),
            "one token per period: {tokens:?}"
        );
        let (key_id, mac) = tokens[0]
            .split_once('.')
            .expect("a token carries its key id");
        for (other_id, other_mac) in &firsts {
            assert_ne!(key_id, other_id, "a key id per period: {by_period:?}");
            assert_ne!(mac, other_mac, "an unrelated pseudonym in another period");
        }
        firsts.push((key_id.to_owned(), mac.to_owned()));
    }
}

#[tokio::test]
async fn the_script_route_serves_gtag_unchanged_without_cookies() {
    let site = start_site("").await;
    let mut request = Request::get(site.scrim.url("/gtag/js?id=G-TEST123456"));
    for (name, value) in browser_headers() {
        request = request.header(name, value);
    }
    let (status, headers, body) = send(request.body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], GTAG_JS, "the script passes byte for byte");
    assert_eq!(
        headers["content-type"],
        "application/javascript; charset=UTF-8"
    );
    assert!(!headers.contains_key("set-cookie"));
    let recorded = site.google.requests().pop().unwrap();
    assert_eq!(recorded.uri, "/gtag/js?id=G-TEST123456");
    assert!(!recorded.headers.contains_key("cookie"));
    assert!(!recorded.headers.contains_key("referer"));
    assert!(!everything(&recorded).contains("6778.86"));
}

#[tokio::test]
async fn named_cookies_may_pass_on_a_browser_route() {
    let google = Mock::start_answering(Duration::ZERO, None, google).await;
    let yaml = format!(
        "routes:\n  - name: ga4\n    match: {{path_prefix: /m}}\n    upstream: {}\n    preset: ga4_web\n    keep_cookies: [cart]\n",
        google.url()
    );
    let scrim = Scrim::start(&yaml).await;
    let request = Request::get(scrim.url("/m/g/collect?v=2&en=page_view"))
        .header(
            "cookie",
            "shop_session=s%3Asess-8f2c1e9a; cart=3; _ga=GA1.1.1.2",
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, _) = send(request).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!headers.contains_key("set-cookie"));
    let recorded = google.requests().pop().unwrap();
    assert_eq!(recorded.headers["cookie"], "cart=3");
}
