//! Bucket options that name environment variables (`secret_access_key_env = "MY_SECRET"`),
//! so secrets stay out of configuration files, and the `public_url` of a bucket origin.

use std::collections::BTreeMap;

/// The suffix of an option whose value is the name of an environment variable holding the
/// option's value.
pub(super) const ENV_SUFFIX: &str = "_env";

/// The object_store option a key sets: `secret_access_key_env` sets `secret_access_key`.
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
pub(super) fn option_name(key: &str) -> &str {
    key.strip_suffix(ENV_SUFFIX).unwrap_or(key)
}

/// Every problem with the `*_env` options, as (key, message): an option given both inline
/// and by variable, a variable name that is not one, and (`set`) a variable that is not set
/// or empty. Values are never part of a message.
pub(super) fn env_problems(options: &BTreeMap<String, String>, set: bool) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for (key, variable) in options {
        let Some(option) = key.strip_suffix(ENV_SUFFIX) else {
            continue;
        };
        if options.contains_key(option) {
            problems.push((key.clone(), format!("give `{option}` or `{key}`, not both")));
            continue;
        }
        let valid = !variable.is_empty()
            && !variable.contains('=')
            && variable
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            problems.push((
                key.clone(),
                format!("{variable:?} is not an environment variable name (A-Z, 0-9, _)"),
            ));
            continue;
        }
        if !set {
            continue;
        }
        match std::env::var(variable) {
            Ok(value) if !value.is_empty() => {}
            Ok(_) => problems.push((
                key.clone(),
                format!("the environment variable {variable} is empty"),
            )),
            Err(_) => problems.push((
                key.clone(),
                format!("the environment variable {variable} is not set"),
            )),
        }
    }
    problems
}

/// The options with every `*_env` option replaced by its variable's value.
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
pub(super) fn resolve(
    options: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (key, value) in options {
        match key.strip_suffix(ENV_SUFFIX) {
            Some(option) => {
                let value = std::env::var(value).map_err(|_| {
                    format!("option {key:?}: the environment variable {value} is not set")
                })?;
                out.insert(option.to_owned(), value);
            }
            None => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(out)
}

/// A bucket origin's `public_url`: an `http` or `https` URL without query or fragment.
pub(super) fn check_public_url(value: &str) -> Result<(), String> {
    let url = url::Url::parse(value).map_err(|e| format!("{value:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{value:?}: the scheme must be http or https"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "{value:?}: a public URL has no query, fragment or credentials"
        ));
    }
    Ok(())
}
