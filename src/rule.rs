//! Rules: which misses are pulled, from where, and how.
//!
//! A [`Rule`] is a set of conditions (key prefix and suffix, the inner service's status,
//! the request method) and an action (an [`Origin`], a [`Mode`], a [`Rewrite`] of the key
//! into the origin path). Rules are tried in the order they were added; the first match wins.

use std::fmt;
use std::sync::Arc;

use http::{Method, StatusCode};

use crate::origin::Origin;

/// What a matching rule does with a miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Fetch from the origin now, stream the bytes to the client while writing them to the
    /// store; the next request for the key is a plain hit. Concurrent misses for one key
    /// share one fetch (`x-origin-pull: pulled` for the first, `coalesced` for the others).
    #[default]
    Sync,
    /// Answer at once with a redirect to the origin's URL for the key and fill the store in
    /// the background (deduplicated per key, through a bounded queue); `x-origin-pull: async`.
    Async,
    /// Only redirect to the origin's URL for the key; store nothing; `x-origin-pull: redirect`.
    Redirect,
    /// Stream from the origin without storing; `x-origin-pull: proxied`.
    Proxy,
}

/// The status of the redirects answered in [`Mode::Async`] and [`Mode::Redirect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedirectStatus {
    /// `301 Moved Permanently` (clients and caches may remember it).
    MovedPermanently,
    /// `302 Found` (the default, as the clouds' async origin-pull answers).
    #[default]
    Found,
    /// `307 Temporary Redirect` (the method and body are kept).
    TemporaryRedirect,
}

impl RedirectStatus {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::MovedPermanently => StatusCode::MOVED_PERMANENTLY,
            Self::Found => StatusCode::FOUND,
            Self::TemporaryRedirect => StatusCode::TEMPORARY_REDIRECT,
        }
    }
}

/// What a sync fill does when the client that started it goes away mid-body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientDisconnect {
    /// Keep pulling and store the object anyway (the default, as nginx `proxy_store` does):
    /// the next request will be a hit.
    #[default]
    FinishFill,
    /// Stop pulling and abort the write; nothing is stored.
    CancelFill,
}

/// How a store key becomes the path requested from the origin.
///
/// Steps apply in the order they were added, each to the previous result. The identity
/// rewrite (no steps) requests the key itself, below the origin's base path.
///
/// ```
/// use tower_origin_pull::Rewrite;
///
/// let rw = Rewrite::identity().replace_prefix("img/", "images/").add_suffix(".webp");
/// assert_eq!(rw.apply("img/cat"), "images/cat.webp");
///
/// let rw = Rewrite::template("v2/${key}/original");
/// assert_eq!(rw.apply("a/b"), "v2/a/b/original");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    ReplacePrefix { from: String, to: String },
    AddSuffix(String),
    Fixed(String),
    Template(String),
}

impl Rewrite {
    /// The key unchanged.
    pub fn identity() -> Self {
        Self::default()
    }

    /// A rewrite whose only step is [`Rewrite::then_template`]: `${key}` is replaced by the key.
    pub fn template(template: impl Into<String>) -> Self {
        Self::identity().then_template(template)
    }

    /// Every key maps to this one origin path.
    pub fn fixed(path: impl Into<String>) -> Self {
        Self {
            steps: vec![Step::Fixed(path.into())],
        }
    }

    /// Remove `prefix` from the start of the key, if it is there.
    #[must_use]
    pub fn strip_prefix(self, prefix: impl Into<String>) -> Self {
        self.replace_prefix(prefix, "")
    }

    /// Replace `from` at the start of the key with `to`, if the key starts with `from`.
    #[must_use]
    pub fn replace_prefix(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.steps.push(Step::ReplacePrefix {
            from: from.into(),
            to: to.into(),
        });
        self
    }

    /// Append `suffix` to the key.
    #[must_use]
    pub fn add_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.steps.push(Step::AddSuffix(suffix.into()));
        self
    }

    /// Replace every `${key}` in `template` with the key so far.
    #[must_use]
    pub fn then_template(mut self, template: impl Into<String>) -> Self {
        self.steps.push(Step::Template(template.into()));
        self
    }

    /// Apply the steps to `key`, giving the origin path (without a leading `/`).
    pub fn apply(&self, key: &str) -> String {
        let mut out = key.to_owned();
        for step in &self.steps {
            out = match step {
                Step::ReplacePrefix { from, to } => match out.strip_prefix(from.as_str()) {
                    Some(rest) => format!("{to}{rest}"),
                    None => out,
                },
                Step::AddSuffix(suffix) => out + suffix,
                Step::Fixed(path) => path.clone(),
                Step::Template(t) => t.replace("${key}", &out),
            };
        }
        out
    }
}

/// One origin-pull rule: conditions and an action.
///
/// ```
/// use http::StatusCode;
/// use tower_origin_pull::{HttpOrigin, Rewrite, Rule};
///
/// # fn main() -> Result<(), tower_origin_pull::Error> {
/// let rule = Rule::new(HttpOrigin::new("http://127.0.0.1:9000/assets")?)
///     .named("images")
///     .prefix("img/")
///     .suffix(".png")
///     .on_status([StatusCode::NOT_FOUND, StatusCode::FORBIDDEN])
///     .rewrite(Rewrite::identity().strip_prefix("img/"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Rule {
    pub(crate) name: Option<Arc<str>>,
    prefix: String,
    suffix: String,
    statuses: Vec<StatusCode>,
    on_head: bool,
    pub(crate) origin: Arc<dyn Origin>,
    pub(crate) mode: Mode,
    pub(crate) rewrite: Rewrite,
    pub(crate) forward_query: bool,
    pub(crate) on_disconnect: ClientDisconnect,
    pub(crate) redirect_status: RedirectStatus,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("suffix", &self.suffix)
            .field("statuses", &self.statuses)
            .field("on_head", &self.on_head)
            .field("origin", &self.origin)
            .field("mode", &self.mode)
            .field("rewrite", &self.rewrite)
            .field("forward_query", &self.forward_query)
            .field("on_disconnect", &self.on_disconnect)
            .field("redirect_status", &self.redirect_status)
            .finish()
    }
}

impl Rule {
    /// A rule that pulls every GET whose inner response is 404 from `origin`, in
    /// [`Mode::Sync`], requesting the key unchanged.
    pub fn new(origin: impl Origin) -> Self {
        Self {
            name: None,
            prefix: String::new(),
            suffix: String::new(),
            statuses: vec![StatusCode::NOT_FOUND],
            on_head: false,
            origin: Arc::new(origin),
            mode: Mode::Sync,
            rewrite: Rewrite::identity(),
            forward_query: false,
            on_disconnect: ClientDisconnect::FinishFill,
            redirect_status: RedirectStatus::Found,
        }
    }

    /// Name the rule in logs and errors (default `rule#N`, N its position in the layer).
    #[must_use]
    pub fn named(mut self, name: impl AsRef<str>) -> Self {
        self.name = Some(Arc::from(name.as_ref()));
        self
    }

    /// The rule's name, if it has one yet.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Match only keys starting with `prefix` (keys have no leading `/`).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Match only keys ending with `suffix`.
    #[must_use]
    pub fn suffix(mut self, suffix: impl Into<String>) -> Self {
        self.suffix = suffix.into();
        self
    }

    /// The inner service's statuses that make this rule pull (default `[404]`).
    ///
    /// An empty list makes the rule never match.
    #[must_use]
    pub fn on_status(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.statuses = statuses.into_iter().collect();
        self
    }

    /// Also match `HEAD` requests (default: only `GET`). A matching `HEAD` answers with the
    /// origin's headers and still fills the store in full, whatever [`ClientDisconnect`] says.
    #[must_use]
    pub fn on_head(mut self, yes: bool) -> Self {
        self.on_head = yes;
        self
    }

    /// What to do with a match (default [`Mode::Sync`]).
    #[must_use]
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// How the key maps to the origin path (default: unchanged).
    #[must_use]
    pub fn rewrite(mut self, rewrite: Rewrite) -> Self {
        self.rewrite = rewrite;
        self
    }

    /// Send the request's query string to the origin (default `false`). The store key never
    /// includes the query string either way.
    #[must_use]
    pub fn forward_query(mut self, yes: bool) -> Self {
        self.forward_query = yes;
        self
    }

    /// The redirect status in [`Mode::Async`] and [`Mode::Redirect`] (default `302`).
    #[must_use]
    pub fn redirect_status(mut self, status: RedirectStatus) -> Self {
        self.redirect_status = status;
        self
    }

    /// What a sync fill does when its client disconnects (default
    /// [`ClientDisconnect::FinishFill`]).
    #[must_use]
    pub fn on_client_disconnect(mut self, policy: ClientDisconnect) -> Self {
        self.on_disconnect = policy;
        self
    }

    pub(crate) fn statuses(&self) -> &[StatusCode] {
        &self.statuses
    }

    pub(crate) fn label(&self) -> Arc<str> {
        self.name.clone().unwrap_or_else(|| Arc::from("rule"))
    }

    pub(crate) fn accepts(&self, method: &Method) -> bool {
        method == Method::GET || (self.on_head && method == Method::HEAD)
    }

    pub(crate) fn matches(&self, key: &str, method: &Method, status: StatusCode) -> bool {
        self.accepts(method)
            && self.statuses.contains(&status)
            && key.starts_with(self.prefix.as_str())
            && key.ends_with(self.suffix.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Rewrite;

    #[test]
    fn rewrites() {
        assert_eq!(Rewrite::identity().apply("a/b"), "a/b");
        assert_eq!(Rewrite::identity().strip_prefix("a/").apply("a/b"), "b");
        assert_eq!(Rewrite::identity().strip_prefix("x/").apply("a/b"), "a/b");
        assert_eq!(Rewrite::identity().add_suffix(".gz").apply("a"), "a.gz");
        assert_eq!(Rewrite::fixed("one").apply("a/b"), "one");
        assert_eq!(Rewrite::template("p/${key}/${key}").apply("k"), "p/k/k");
        assert_eq!(
            Rewrite::identity()
                .replace_prefix("a/", "z/")
                .then_template("m/${key}")
                .apply("a/b"),
            "m/z/b"
        );
    }
}
