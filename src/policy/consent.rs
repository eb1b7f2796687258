//! Consent: opt-out signals on a request, and what a route decides when one
//! is present. California's regulations (11 CCR 7025) make `Sec-GPC: 1` an
//! opt-out of sale and sharing; apps add their own signals (a consent header
//! they set, Google Consent Mode's `gcs` parameter).

use http::HeaderMap;

use super::Rules;

pub use crate::config::Decision;

/// Where a configured signal is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A request header (name lowercase).
    Header(String),
    /// A query parameter (decoded name, exact).
    Query(String),
    /// A value in the body: what this probe of [`Consent::body_probes`]
    /// finds.
    Body(usize),
}

/// One opt-out signal: when its source has this value, the decision applies.
#[derive(Clone, Debug)]
pub struct Signal {
    /// `gpc`, or the signal's selector as configured (`header.x-consent`):
    /// the metric label.
    pub label: String,
    pub source: Source,
    /// Compared trimmed and ASCII case-insensitively.
    pub equals: String,
    pub decision: Decision,
}

/// A route's consent settings, compiled.
#[derive(Clone, Debug)]
pub struct Consent {
    /// Checked in order; the first present decides. `Sec-GPC: 1` comes first
    /// unless the route ignores it.
    pub signals: Vec<Signal>,
    pub block_status: http::StatusCode,
    /// The route's rules followed by a `drop` of every identifier field: what
    /// `strip_identifiers` rewrites with.
    pub stripped: Rules,
    /// How many identifier selectors `stripped` adds to the route's rules.
    pub identifiers: usize,
    /// The route's rules followed by the preset's limited-data-use flags:
    /// what `limited_data_use` rewrites with (`None` when the preset has
    /// none, and then no signal decides it).
    pub limited: Option<Rules>,
    /// One rule set for each signal read from the body, its one rule a
    /// `read` of the signal's selector for the signal's value (apart, so
    /// that two signals that select the same value, or one inside the
    /// other, each find it). When there are any, the body is read whole
    /// before it is rewritten.
    pub body_probes: Vec<Rules>,
}

/// The label and value of the Global Privacy Control signal.
pub const GPC_LABEL: &str = "gpc";
pub const GPC_HEADER: &str = "sec-gpc";

impl Consent {
    /// The first header or query signal the request carries, by its index
    /// in `signals`. Body signals are looked at only after these, with
    /// [`Consent::decide_body`].
    pub fn decide(&self, headers: &HeaderMap, query: Option<&str>) -> Option<usize> {
        self.signals.iter().position(|signal| match &signal.source {
            Source::Body(_) => false,
            // Under any spelling a server behind scrim would read as it.
            Source::Header(name) => headers.iter().any(|(key, value)| {
                crate::policy::canonical_header_name(key.as_str()) == name.as_str()
                    && value
                        .to_str()
                        .is_ok_and(|v| signal_matches(v, &signal.equals))
            }),
            Source::Query(name) => {
                query.is_some_and(|query| query_signals(query, name.as_bytes(), &signal.equals))
            }
        })
    }

    /// The first body signal the body carries, by its index in `signals`:
    /// `present` runs a probe over the body, and is asked in order until
    /// one finds its signal.
    pub fn decide_body<E>(
        &self,
        mut present: impl FnMut(&Rules) -> Result<bool, E>,
    ) -> Result<Option<usize>, E> {
        for (index, signal) in self.signals.iter().enumerate() {
            if let Source::Body(probe) = signal.source
                && let Some(rules) = self.body_probes.get(probe)
                && present(rules)?
            {
                return Ok(Some(index));
            }
        }
        Ok(None)
    }
}

/// Whether the query carries `name=expected`, read with the rewriters'
/// decoder. A pair whose name cannot be decoded, or whose value cannot be
/// where the name is `name`, might be the signal: every decision
/// restricts, so it counts as given (fail closed). Other pairs with a stray
/// `%` (`utm_content=50%off`) are not looked at.
fn query_signals(query: &str, name: &[u8], expected: &str) -> bool {
    crate::percent::fields(query.as_bytes()).any(|(key, value)| match crate::percent::decode(key) {
        None => true,
        Some(key) if key == name => match crate::percent::decode(value) {
            None => true,
            Some(value) => std::str::from_utf8(&value).is_ok_and(|v| signal_matches(v, expected)),
        },
        Some(_) => false,
    })
}

/// Whether a signal's value is the one that means "opted out": compared
/// trimmed and ASCII case-insensitively.
pub(crate) fn signal_matches(value: &str, expected: &str) -> bool {
    value.trim().eq_ignore_ascii_case(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consent() -> Consent {
        Consent {
            signals: vec![
                Signal {
                    label: GPC_LABEL.to_owned(),
                    source: Source::Header(GPC_HEADER.to_owned()),
                    equals: "1".to_owned(),
                    decision: Decision::StripIdentifiers,
                },
                Signal {
                    label: "query.gcs".to_owned(),
                    source: Source::Query("gcs".to_owned()),
                    equals: "G100".to_owned(),
                    decision: Decision::Block,
                },
            ],
            block_status: http::StatusCode::NO_CONTENT,
            stripped: Rules::default(),
            identifiers: 0,
            limited: None,
            body_probes: Vec::new(),
        }
    }

    #[test]
    fn the_first_signal_present_decides() {
        let consent = consent();
        let mut headers = HeaderMap::new();
        assert_eq!(consent.decide(&headers, None), None);
        assert_eq!(consent.decide(&headers, Some("gcs=G111&x=1")), None);
        assert_eq!(consent.decide(&headers, Some("x=1&gcs=g100")), Some(1));
        assert_eq!(consent.decide(&headers, Some("gcs=G%31%30%30")), Some(1));
        // Undecodable where it might be the signal: the signal applies.
        assert_eq!(
            consent.decide(&headers, Some("gcs=G111&g%+acs=G100")),
            Some(1)
        );
        assert_eq!(consent.decide(&headers, Some("gcs=G%+100")), Some(1));
        // A stray `%` elsewhere decides nothing.
        assert_eq!(
            consent.decide(&headers, Some("gcs=G111&utm_content=50%off")),
            None
        );
        headers.insert("sec-gpc", " 1 ".parse().unwrap());
        assert_eq!(consent.decide(&headers, Some("gcs=G100")), Some(0));
        headers.insert("sec-gpc", "0".parse().unwrap());
        assert_eq!(consent.decide(&headers, None), None);
        headers.insert("sec_gpc", "1".parse().unwrap());
        assert_eq!(consent.decide(&headers, None), Some(0));
    }
}
