//! A `User-Agent` generalized to what analytics reports need: the browser's
//! family and major version, and the operating system's family. The output
//! is built from fixed templates and one number, so nothing else of the
//! original (build numbers, device models, OS versions, installed
//! extensions' tokens) can pass: the fingerprint shrinks to a few hundred
//! possible strings, each one a user agent real browsers send (Chrome's
//! reduced user agent is written the same way), so the platform still
//! parses the browser and the system.

/// Operating system families, told by the tokens browsers put in the
/// user agent's first parentheses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum System {
    Windows,
    Ipad,
    Mac,
    Ios,
    Android,
    Chromebook,
    Linux,
    Other,
}

/// Browser families, with the product token their major version follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Browser {
    Edge,
    Opera,
    Samsung,
    Firefox,
    Chrome,
    Safari,
}

/// The generalized user agent for `text`.
pub fn generalize(text: &str) -> String {
    let os = os_of(text);
    let Some((browser, major)) = browser_of(text) else {
        // A bot, a library or an unknown browser: its name is kept out, the
        // system family is all that goes.
        return format!("Mozilla/5.0 ({})", platform(os, None));
    };
    let mobile = matches!(os, System::Android | System::Ios | System::Ipad);
    match browser {
        Browser::Firefox => format!(
            "Mozilla/5.0 ({}; rv:{major}.0) Gecko/20100101 Firefox/{major}.0",
            platform(os, Some(browser))
        ),
        Browser::Safari => format!(
            "Mozilla/5.0 ({}) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{major}.0{} Safari/604.1",
            platform(os, Some(browser)),
            if mobile { " Mobile/15E148" } else { "" }
        ),
        _ => {
            // The Chromium family: Chrome itself, and browsers built on it,
            // which name the Chromium they run as well.
            let chromium = major_after(text, "Chrome/")
                .or_else(|| major_after(text, "CriOS/"))
                .unwrap_or(major);
            let chrome = format!(
                "Mozilla/5.0 ({}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{chromium}.0.0.0{} Safari/537.36",
                platform(os, Some(browser)),
                if mobile { " Mobile" } else { "" }
            );
            match browser {
                Browser::Edge => format!("{chrome} Edg/{major}.0.0.0"),
                Browser::Opera => format!("{chrome} OPR/{major}.0.0.0"),
                Browser::Samsung => {
                    chrome.replacen(" Chrome/", &format!(" SamsungBrowser/{major}.0 Chrome/"), 1)
                }
                _ => chrome,
            }
        }
    }
}

/// The first parentheses of a user agent, as the family's browsers write
/// them (with each system's version frozen, as Chrome freezes them).
fn platform(os: System, browser: Option<Browser>) -> &'static str {
    let firefox = browser == Some(Browser::Firefox);
    match os {
        System::Windows => "Windows NT 10.0; Win64; x64",
        System::Mac if firefox => "Macintosh; Intel Mac OS X 10.15",
        System::Mac => "Macintosh; Intel Mac OS X 10_15_7",
        System::Ios => "iPhone; CPU iPhone OS 18_0 like Mac OS X",
        System::Ipad => "iPad; CPU OS 18_0 like Mac OS X",
        System::Android if firefox => "Android 10; Mobile",
        System::Android => "Linux; Android 10; K",
        System::Chromebook => "X11; CrOS x86_64 14541.0.0",
        System::Linux => "X11; Linux x86_64",
        System::Other => "compatible",
    }
}

fn os_of(text: &str) -> System {
    let system = text
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map_or("", |(inside, _)| inside);
    let has = |token: &str| system.contains(token);
    if has("iPad") {
        System::Ipad
    } else if has("iPhone") || has("iPod") {
        System::Ios
    } else if has("Android") {
        System::Android
    } else if has("Windows") {
        System::Windows
    } else if has("CrOS") {
        System::Chromebook
    } else if has("Macintosh") || has("Mac OS X") {
        System::Mac
    } else if has("Linux") || has("X11") {
        System::Linux
    } else {
        System::Other
    }
}

/// The browser and its major version, from the product tokens. The order
/// matters: browsers built on Chromium or WebKit also name Chrome and
/// Safari, so their own token is looked for first.
fn browser_of(text: &str) -> Option<(Browser, u16)> {
    const TOKENS: [(&str, Browser); 9] = [
        ("Edg/", Browser::Edge),
        ("EdgA/", Browser::Edge),
        ("EdgiOS/", Browser::Edge),
        ("OPR/", Browser::Opera),
        ("SamsungBrowser/", Browser::Samsung),
        ("Firefox/", Browser::Firefox),
        ("FxiOS/", Browser::Firefox),
        ("CriOS/", Browser::Chrome),
        ("Chrome/", Browser::Chrome),
    ];
    for (token, browser) in TOKENS {
        if let Some(major) = major_after(text, token) {
            return Some((browser, major));
        }
    }
    // Safari tells its version in `Version/`, beside a `Safari/` token.
    if text.contains("Safari/") {
        return major_after(text, "Version/").map(|major| (Browser::Safari, major));
    }
    None
}

/// The integer after the first `token`, if it is one of a plausible size.
fn major_after(text: &str, token: &str) -> Option<u16> {
    let start = text.find(token)? + token.len();
    let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 4 {
        return None;
    }
    text[start..start + digits].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_majors_only() {
        let cases = [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.201 Safari/537.36",
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; SM-S918B Build/UP1A.231005.007) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.6167.178 Mobile Safari/537.36",
                "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/604.1",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
            ),
            (
                "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
                "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
                "Mozilla/5.0 (iPad; CPU OS 18_0 like Mac OS X) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
            ),
            ("curl/8.5.0", "Mozilla/5.0 (compatible)"),
            (
                "Googlebot/2.1 (+http://www.google.com/bot.html)",
                "Mozilla/5.0 (compatible)",
            ),
        ];
        for (original, expected) in cases {
            assert_eq!(generalize(original), expected, "{original}");
        }
    }

    #[test]
    fn nothing_but_families_and_one_number_passes() {
        let original = "Mozilla/5.0 (Linux; Android 13; Pixel 7 Pro jane@example.com) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.6312.99 Mobile Safari/537.36 [FBAN/FB4A;FBAV/455.0.0.44.88;]";
        let out = generalize(original);
        for leaked in ["Pixel", "jane", "6312", "FBAN", "13;"] {
            assert!(!out.contains(leaked), "{leaked} in {out}");
        }
        assert!(out.contains("Chrome/123.0.0.0 Mobile"), "{out}");
        assert_eq!(generalize(""), "Mozilla/5.0 (compatible)");
        assert_eq!(
            generalize("Chrome/99999999"),
            "Mozilla/5.0 (compatible)",
            "a version too long to be one"
        );
    }
}
