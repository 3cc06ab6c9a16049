//! [`Rewrite`]: store key → origin path.

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
    ReplaceSuffix { from: String, to: String },
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

    /// Replace `from` at the end of the key with `to`, if the key ends with `from`
    /// (COS `SuffixConfiguration`).
    #[must_use]
    pub fn replace_suffix(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.steps.push(Step::ReplaceSuffix {
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
                Step::ReplaceSuffix { from, to } => match out.strip_suffix(from.as_str()) {
                    Some(rest) => format!("{rest}{to}"),
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

#[cfg(test)]
mod tests {
    use super::Rewrite;

    #[test]
    fn rewrites() {
        assert_eq!(Rewrite::identity().apply("a/b"), "a/b");
        assert_eq!(Rewrite::identity().strip_prefix("a/").apply("a/b"), "b");
        assert_eq!(Rewrite::identity().strip_prefix("x/").apply("a/b"), "a/b");
        assert_eq!(Rewrite::identity().add_suffix(".gz").apply("a"), "a.gz");
        assert_eq!(
            Rewrite::identity()
                .replace_suffix(".jpg", ".webp")
                .apply("a.jpg"),
            "a.webp"
        );
        assert_eq!(
            Rewrite::identity()
                .replace_suffix(".jpg", ".webp")
                .apply("a.png"),
            "a.png"
        );
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
