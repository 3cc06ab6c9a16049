//! Import of COS and OSS origin rules: samples written from the clouds' documented examples,
//! imported, pointed at a loopback origin and served: the keys the cloud rule would pull are
//! pulled from the rewritten path (with or without the query string), the others are not.
//! Then what cannot be expressed: each field reported with its place, never dropped.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::StatusCode;
use object_store::local::LocalFileSystem;
use tower_origin_pull::OriginPullLayer;
use tower_origin_pull::config::import::{self, Imported};
use tower_origin_pull::config::{Config, RuleConfig};

use common::*;

/// A COS origin configuration after the PutBucketOrigin documentation: its element layout,
/// the SDK example's hosts (a COS bucket, standby hosts by number), listed out of priority
/// order.
const COS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<OriginConfiguration>
  <OriginRule>
    <RulePriority>2</RulePriority>
    <OriginType>Mirror</OriginType>
    <OriginCondition>
      <HTTPStatusCode>404</HTTPStatusCode>
      <Prefix>img/</Prefix>
      <Suffix>.jpg</Suffix>
    </OriginCondition>
    <OriginParameter>
      <Protocol>HTTP</Protocol>
      <FollowQueryString>false</FollowQueryString>
      <HttpHeader>
        <FollowAllHeaders>false</FollowAllHeaders>
        <NewHttpHeaders>
          <Header><Key>x-cos-meta-source</Key><Value>cos</Value></Header>
        </NewHttpHeaders>
        <FollowHttpHeaders>
          <Header><Key>X-Tenant</Key></Header>
        </FollowHttpHeaders>
      </HttpHeader>
      <FollowRedirection>true</FollowRedirection>
      <CopyOriginData>true</CopyOriginData>
    </OriginParameter>
    <OriginInfo>
      <HostInfo>
        <HostName>examplebucket-1250000000.cos.ap-shanghai.myqcloud.com</HostName>
        <Weight>10</Weight>
        <StandbyHostName_2>www.myqcloud.com</StandbyHostName_2>
        <StandbyHostName_1>www.qq.com</StandbyHostName_1>
      </HostInfo>
      <FileInfo>
        <PrefixConfiguration>
          <Prefix>img/</Prefix>
          <ReplacedWithPrefix>images/</ReplacedWithPrefix>
        </PrefixConfiguration>
      </FileInfo>
    </OriginInfo>
  </OriginRule>
  <OriginRule>
    <RulePriority>1</RulePriority>
    <OriginType>Mirror</OriginType>
    <OriginCondition>
      <HTTPStatusCode>404</HTTPStatusCode>
      <Prefix>/docs/</Prefix>
    </OriginCondition>
    <OriginParameter>
      <Protocol>FOLLOW</Protocol>
    </OriginParameter>
    <OriginInfo>
      <HostInfo>
        <HostName>examplebucket-1250000000.cos.ap-shanghai.myqcloud.com</HostName>
      </HostInfo>
      <FileInfo>
        <SuffixConfiguration>
          <Suffix></Suffix>
          <ReplacedWithSuffix>.html</ReplacedWithSuffix>
        </SuffixConfiguration>
      </FileInfo>
    </OriginInfo>
  </OriginRule>
  <OriginRule>
    <RulePriority>3</RulePriority>
    <OriginType>Redirect</OriginType>
    <OriginCondition>
      <HTTPStatusCode>404</HTTPStatusCode>
      <Prefix>old/</Prefix>
    </OriginCondition>
    <OriginParameter>
      <Protocol>HTTPS</Protocol>
      <FollowQueryString>true</FollowQueryString>
      <HttpRedirectCode>301</HttpRedirectCode>
    </OriginParameter>
    <OriginInfo>
      <HostInfo><HostName>www.example.com</HostName></HostInfo>
      <FileInfo>
        <FixedFileConfiguration><FixedFilePath>/moved.html</FixedFilePath></FixedFileConfiguration>
      </FileInfo>
    </OriginInfo>
  </OriginRule>
  <OriginRule>
    <RulePriority>4</RulePriority>
    <OriginType>Proxy</OriginType>
    <OriginCondition>
      <HTTPStatusCode>404</HTTPStatusCode>
      <Prefix>async/</Prefix>
    </OriginCondition>
    <OriginParameter>
      <Protocol>HTTP</Protocol>
      <HttpRedirectCode>307</HttpRedirectCode>
    </OriginParameter>
    <OriginInfo>
      <HostInfo><HostName>www.example.com</HostName></HostInfo>
    </OriginInfo>
  </OriginRule>
</OriginConfiguration>
"#;

/// The OSS PutBucketWebsite documentation's example (website settings, a Mirror rule with
/// every header option, an External redirect with a `${key}` template) with conditions
/// narrowed so that the rules do not overlap, plus prefix replacement, a suffix condition
/// and a header condition; rule numbers out of order.
const OSS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<WebsiteConfiguration>
  <IndexDocument>
    <Suffix>index.html</Suffix>
  </IndexDocument>
  <ErrorDocument>
    <Key>error.html</Key>
    <HttpStatus>404</HttpStatus>
  </ErrorDocument>
  <RoutingRules>
    <RoutingRule>
      <RuleNumber>2</RuleNumber>
      <Condition>
        <KeyPrefixEquals>abc/</KeyPrefixEquals>
        <HttpErrorCodeReturnedEquals>404</HttpErrorCodeReturnedEquals>
      </Condition>
      <Redirect>
        <RedirectType>Mirror</RedirectType>
        <PassQueryString>true</PassQueryString>
        <MirrorURL>http://example.com/</MirrorURL>
        <MirrorURLSlave>http://slave.example.com/</MirrorURLSlave>
        <MirrorPassQueryString>true</MirrorPassQueryString>
        <MirrorFollowRedirect>true</MirrorFollowRedirect>
        <MirrorCheckMd5>false</MirrorCheckMd5>
        <EnableReplacePrefix>true</EnableReplacePrefix>
        <ReplaceKeyPrefixWith>def/</ReplaceKeyPrefixWith>
        <MirrorHeaders>
          <PassAll>true</PassAll>
          <Pass>myheader-key1</Pass>
          <Pass>myheader-key2</Pass>
          <Remove>myheader-key3</Remove>
          <Remove>myheader-key4</Remove>
          <Set>
            <Key>myheader-key5</Key>
            <Value>myheader-value5</Value>
          </Set>
        </MirrorHeaders>
      </Redirect>
    </RoutingRule>
    <RoutingRule>
      <RuleNumber>1</RuleNumber>
      <Condition>
        <KeyPrefixEquals>abc/</KeyPrefixEquals>
        <KeySuffixEquals>.txt</KeySuffixEquals>
        <HttpErrorCodeReturnedEquals>404</HttpErrorCodeReturnedEquals>
      </Condition>
      <Redirect>
        <RedirectType>Mirror</RedirectType>
        <MirrorURL>http://example.com/dir1/</MirrorURL>
        <MirrorCheckMd5>true</MirrorCheckMd5>
        <EnableReplacePrefix>false</EnableReplacePrefix>
        <ReplaceKeyWith>prefix/${key}.suffix</ReplaceKeyWith>
      </Redirect>
    </RoutingRule>
    <RoutingRule>
      <Condition>
        <KeyPrefixEquals>ext/</KeyPrefixEquals>
        <HttpErrorCodeReturnedEquals>404</HttpErrorCodeReturnedEquals>
      </Condition>
      <RuleNumber>3</RuleNumber>
      <Redirect>
        <ReplaceKeyWith>prefix/${key}</ReplaceKeyWith>
        <HttpRedirectCode>302</HttpRedirectCode>
        <EnableReplacePrefix>false</EnableReplacePrefix>
        <PassQueryString>false</PassQueryString>
        <Protocol>http</Protocol>
        <HostName>example.com</HostName>
        <RedirectType>External</RedirectType>
      </Redirect>
    </RoutingRule>
    <RoutingRule>
      <RuleNumber>4</RuleNumber>
      <Condition>
        <KeyPrefixEquals>t/</KeyPrefixEquals>
        <HttpErrorCodeReturnedEquals>404</HttpErrorCodeReturnedEquals>
        <IncludeHeader>
          <Key>x-tenant</Key>
          <StartsWith>blue</StartsWith>
        </IncludeHeader>
      </Condition>
      <Redirect>
        <RedirectType>Mirror</RedirectType>
        <MirrorURL>http://example.com/</MirrorURL>
      </Redirect>
    </RoutingRule>
  </RoutingRules>
</WebsiteConfiguration>
"#;

/// The warning an imported rule gets when it forwards the query or client headers.
const UNKEYED: &str = "imported with `unkeyed_forwarding = true`";

/// Where each report is, for comparing (the `unkeyed_forwarding` warnings are checked on
/// their own, by [`unkeyed`]).
fn places(imported: &Imported) -> Vec<&str> {
    imported
        .unsupported
        .iter()
        .filter(|u| !u.reason.starts_with(UNKEYED))
        .map(|u| u.at.as_str())
        .collect()
}

/// The rules imported with `unkeyed_forwarding = true`: each forwards the query or client
/// headers, and each has its warning.
fn unkeyed(imported: &Imported) -> Vec<String> {
    let warned: Vec<&str> = imported
        .unsupported
        .iter()
        .filter(|u| u.reason.starts_with(UNKEYED))
        .map(|u| u.at.as_str())
        .collect();
    let rules: Vec<String> = imported
        .rules
        .iter()
        .filter(|r| r.unkeyed_forwarding == Some(true))
        .map(|r| r.name.clone().unwrap())
        .collect();
    assert_eq!(
        warned.len(),
        rules.len(),
        "a warning per rule: {warned:?} {rules:?}"
    );
    for rule in &imported.rules {
        let forwards = rule.query.as_deref() == Some("forward")
            || !rule.query_params.is_empty()
            || rule.request_headers.as_ref().is_some_and(|h| {
                h.pass.as_deref().is_some_and(|p| p != "none") || !h.pass_only.is_empty()
            });
        assert_eq!(forwards, rule.unkeyed_forwarding == Some(true), "{rule:?}");
    }
    rules
}

/// The report at `at`; panics with every report if there is none.
fn reason<'a>(imported: &'a Imported, at: &str) -> &'a str {
    imported
        .unsupported
        .iter()
        .find(|u| u.at == at)
        .map(|u| u.reason.as_str())
        .unwrap_or_else(|| panic!("no report at {at}: {:#?}", imported.unsupported))
}

/// The imported rules build into a layer, as they are.
fn assert_builds(rules: &[RuleConfig]) {
    let mut config = Config::default();
    config.store.url = "memory://".to_owned();
    config.rules = rules.to_vec();
    assert_eq!(config.validate(), vec![]);
    OriginPullLayer::from_config(&config).expect("imported rules build");
}

/// Every origin and standby host of `rules` replaced with `url` (a loopback origin).
fn point_at(rules: &mut [RuleConfig], url: &str) {
    for rule in rules {
        for host in rule
            .origin
            .hosts
            .iter_mut()
            .chain(rule.origin.standby.iter_mut())
        {
            *host = url.to_owned();
        }
    }
}

/// A layer over a local directory, built from `rules`, serving on 127.0.0.1.
async fn serve_rules(rules: Vec<RuleConfig>) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.url = format!("file://{}", dir.path().display());
    config.rules = rules;
    let layer = OriginPullLayer::from_config(&config).unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let addr = serve(store_service(store).layer(layer)).await;
    (format!("http://{addr}/"), dir)
}

#[test]
fn cos_sample_maps_field_by_field() {
    let imported = import::from_cos_xml(COS).unwrap();
    assert_eq!(places(&imported), Vec::<&str>::new());
    assert!(
        !unkeyed(&imported).is_empty(),
        "COS forwards the query by default"
    );
    assert_builds(&imported.rules);
    let names: Vec<&str> = imported
        .rules
        .iter()
        .map(|r| r.name.as_deref().unwrap())
        .collect();
    assert_eq!(
        names,
        ["cos-rule-1", "cos-rule-2", "cos-rule-3", "cos-rule-4"]
    );

    let [docs, img, old, later] = &imported.rules[..] else {
        unreachable!()
    };
    assert_eq!(docs.mode.as_deref(), Some("sync"));
    assert_eq!(docs.prefix.as_deref(), Some("docs/"));
    assert_eq!(docs.query.as_deref(), Some("forward")); // COS's default
    assert_eq!(docs.origin.protocol.as_deref(), Some("same")); // FOLLOW
    assert_eq!(
        docs.rewrite.as_ref().unwrap().add_suffix.as_deref(),
        Some(".html")
    );

    assert_eq!(img.prefix.as_deref(), Some("img/"));
    assert_eq!(img.suffix.as_deref(), Some(".jpg"));
    assert_eq!(img.statuses, None); // [404], the default
    assert_eq!(img.query.as_deref(), Some("drop"));
    assert_eq!(
        img.origin.hosts,
        ["http://examplebucket-1250000000.cos.ap-shanghai.myqcloud.com/"]
    );
    assert_eq!(img.origin.weights, [10]);
    assert_eq!(
        img.origin.standby,
        ["http://www.qq.com/", "http://www.myqcloud.com/"]
    );
    let rp = img
        .rewrite
        .as_ref()
        .unwrap()
        .replace_prefix
        .as_ref()
        .unwrap();
    assert_eq!((rp.from.as_str(), rp.to.as_str()), ("img/", "images/"));
    let headers = img.request_headers.as_ref().unwrap();
    assert_eq!(headers.pass_only, ["x-tenant"]);
    assert_eq!(headers.set["x-cos-meta-source"], "cos");

    assert_eq!(old.mode.as_deref(), Some("redirect"));
    assert_eq!(old.origin.hosts, ["https://www.example.com/"]);
    assert_eq!(old.redirect_status, Some(301));
    assert_eq!(
        old.rewrite.as_ref().unwrap().fixed.as_deref(),
        Some("moved.html")
    );

    assert_eq!(later.mode.as_deref(), Some("async"));
    assert_eq!(later.redirect_status, Some(307));
}

#[tokio::test]
async fn cos_sample_pulls_the_keys_the_cloud_rule_would() {
    let origin = TestOrigin::start().await;
    origin.object("images/cat.jpg", "meow");
    origin.object("docs/guide.html", "the guide");
    origin.object("async/a.bin", "later");
    let mut imported = import::from_cos_xml(COS).unwrap();
    point_at(&mut imported.rules, &origin.url);
    let (url, _dir) = serve_rules(imported.rules).await;
    let client = client();

    // Rule 2: prefix img/ and suffix .jpg, img/ → images/ at the origin.
    let got = get(&client, &format!("{url}img/cat.jpg?v=1")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body(), b"meow");
    assert_eq!(got.outcome(), Some("pulled"));
    assert_eq!(origin.hits("images/cat.jpg"), 1);
    // Stored: the second GET is a plain hit.
    let got = get(&client, &format!("{url}img/cat.jpg")).await;
    assert_eq!((got.status, got.outcome()), (StatusCode::OK, None));
    assert_eq!(got.body(), b"meow");
    assert_eq!(origin.hits("images/cat.jpg"), 1);

    // Rule 1: prefix docs/ (written /docs/ in COS), ".html" added.
    let got = get(&client, &format!("{url}docs/guide")).await;
    assert_eq!(got.body(), b"the guide");
    assert_eq!(origin.hits("docs/guide.html"), 1);

    // Rule 3: a 301 to the one fixed file, with the query string.
    let got = get(&client, &format!("{url}old/page?x=1")).await;
    assert_eq!(got.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        got.headers["location"],
        format!("{}moved.html?x=1", origin.url)
    );

    // Rule 4 (Proxy: async origin-pull): a 307 to the origin now, the store filled after.
    let got = get(&client, &format!("{url}async/a.bin")).await;
    assert_eq!(got.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        got.headers["location"],
        format!("{}async/a.bin", origin.url)
    );
    let stored = eventually(Duration::from_secs(5), || async {
        get(&client, &format!("{url}async/a.bin"))
            .await
            .outcome()
            .is_none()
    })
    .await;
    assert!(stored, "the async rule fills the store in the background");
    assert_eq!(origin.hits("async/a.bin"), 1);

    // Keys no rule matches are never asked for.
    let before = origin.total_hits();
    for key in ["img/cat.png", "images/cat.jpg", "other/a.jpg", "doc/guide"] {
        let got = get(&client, &format!("{url}{key}")).await;
        assert_eq!(got.status, StatusCode::NOT_FOUND, "{key}");
        assert_eq!(got.outcome(), None, "{key}");
    }
    assert_eq!(origin.total_hits(), before);
}

#[test]
fn oss_sample_maps_field_by_field() {
    let imported = import::from_oss_xml(OSS).unwrap();
    unkeyed(&imported);
    assert_eq!(
        places(&imported),
        [
            "WebsiteConfiguration.IndexDocument",
            "WebsiteConfiguration.ErrorDocument"
        ]
    );
    assert_builds(&imported.rules);
    let names: Vec<&str> = imported
        .rules
        .iter()
        .map(|r| r.name.as_deref().unwrap())
        .collect();
    assert_eq!(
        names,
        ["oss-rule-1", "oss-rule-2", "oss-rule-3", "oss-rule-4"]
    );
    let [txt, abc, ext, tenant] = &imported.rules[..] else {
        unreachable!()
    };

    assert_eq!(txt.suffix.as_deref(), Some(".txt"));
    assert_eq!(txt.query.as_deref(), Some("drop")); // OSS's default
    assert_eq!(txt.checksums, Some(vec!["content-md5".to_owned()]));
    assert_eq!(
        txt.rewrite.as_ref().unwrap().template.as_deref(),
        Some("prefix/${key}.suffix")
    );

    assert_eq!(abc.mode.as_deref(), Some("sync"));
    assert_eq!(abc.origin.hosts, ["http://example.com/"]);
    assert_eq!(abc.origin.standby, ["http://slave.example.com/"]);
    assert_eq!(abc.query.as_deref(), Some("forward"));
    assert_eq!(abc.checksums, Some(vec![]));
    let rp = abc
        .rewrite
        .as_ref()
        .unwrap()
        .replace_prefix
        .as_ref()
        .unwrap();
    assert_eq!((rp.from.as_str(), rp.to.as_str()), ("abc/", "def/"));
    let headers = abc.request_headers.as_ref().unwrap();
    assert_eq!(headers.pass.as_deref(), Some("all"));
    assert_eq!(headers.except, ["myheader-key3", "myheader-key4"]);
    assert_eq!(headers.set["myheader-key5"], "myheader-value5");

    assert_eq!(ext.mode.as_deref(), Some("redirect"));
    assert_eq!(ext.origin.hosts, ["http://example.com/"]);
    assert_eq!(ext.redirect_status, Some(302));
    assert_eq!(ext.query.as_deref(), Some("drop"));

    assert_eq!(tenant.when_headers[0].name, "x-tenant");
    assert_eq!(tenant.when_headers[0].starts_with.as_deref(), Some("blue"));
}

#[tokio::test]
async fn oss_sample_pulls_the_keys_the_cloud_rule_would() {
    let origin = TestOrigin::start().await;
    origin.object("prefix/abc/a.txt.suffix", "templated");
    origin.object("def/b.bin", "prefix replaced");
    origin.object("t/x", "for tenants");
    let mut imported = import::from_oss_xml(OSS).unwrap();
    point_at(&mut imported.rules, &origin.url);
    let (url, _dir) = serve_rules(imported.rules).await;
    let client = client();

    // Rule 1 before rule 2: abc/*.txt through the ${key} template.
    let got = get(&client, &format!("{url}abc/a.txt")).await;
    assert_eq!(got.body(), b"templated");
    assert_eq!(origin.hits("prefix/abc/a.txt.suffix"), 1);
    // Rule 2: any other abc/ key, abc/ → def/.
    let got = get(&client, &format!("{url}abc/b.bin?a=b")).await;
    assert_eq!(got.body(), b"prefix replaced");
    assert_eq!(origin.hits("def/b.bin"), 1);
    let got = get(&client, &format!("{url}abc/b.bin")).await;
    assert_eq!((got.outcome(), got.body()), (None, &b"prefix replaced"[..]));
    assert_eq!(origin.hits("def/b.bin"), 1);

    // Rule 3: External, a 302 to the template, without the query string.
    let got = get(&client, &format!("{url}ext/x?a=b")).await;
    assert_eq!(got.status, StatusCode::FOUND);
    assert_eq!(
        got.headers["location"],
        format!("{}prefix/ext/x", origin.url)
    );

    // Rule 4: only with the header.
    let got = get(&client, &format!("{url}t/x")).await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    assert_eq!(origin.hits("t/x"), 0);
    let got = get_with(&client, &format!("{url}t/x"), &[("x-tenant", "blue-7")]).await;
    assert_eq!(got.body(), b"for tenants");
    assert_eq!(origin.hits("t/x"), 1);

    let before = origin.total_hits();
    for key in ["abd/a.txt", "def/b.bin", "x/abc/a.txt"] {
        let got = get(&client, &format!("{url}{key}")).await;
        assert_eq!(got.status, StatusCode::NOT_FOUND, "{key}");
    }
    assert_eq!(origin.total_hits(), before);
}

/// An origin that answers every GET and remembers the path and query it was asked for.
async fn recording_origin() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let app = Router::new().fallback(move |req: Request| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(req.uri().to_string());
            Response::new(Body::from("body"))
        }
    });
    let addr = serve(app).await;
    (format!("http://{addr}/"), seen)
}

#[tokio::test]
async fn query_strings_reach_the_origin_as_each_cloud_says() {
    let cos = r#"<OriginConfiguration>
      <OriginRule><RulePriority>1</RulePriority><OriginType>Mirror</OriginType>
        <OriginCondition><HTTPStatusCode>404</HTTPStatusCode><Prefix>cos-default/</Prefix></OriginCondition>
        <OriginInfo><HostInfo><HostName>origin.example</HostName></HostInfo></OriginInfo>
      </OriginRule>
      <OriginRule><RulePriority>2</RulePriority><OriginType>Mirror</OriginType>
        <OriginCondition><HTTPStatusCode>404</HTTPStatusCode><Prefix>cos-off/</Prefix></OriginCondition>
        <OriginParameter><FollowQueryString>false</FollowQueryString></OriginParameter>
        <OriginInfo><HostInfo><HostName>origin.example</HostName></HostInfo></OriginInfo>
      </OriginRule>
    </OriginConfiguration>"#;
    let oss = r#"<RoutingRules>
      <RoutingRule><RuleNumber>1</RuleNumber>
        <Condition><KeyPrefixEquals>oss-default/</KeyPrefixEquals></Condition>
        <Redirect><RedirectType>Mirror</RedirectType><MirrorURL>http://origin.example/</MirrorURL></Redirect>
      </RoutingRule>
      <RoutingRule><RuleNumber>2</RuleNumber>
        <Condition><KeyPrefixEquals>oss-on/</KeyPrefixEquals></Condition>
        <Redirect><RedirectType>Mirror</RedirectType><MirrorURL>http://origin.example/</MirrorURL>
          <MirrorPassQueryString>true</MirrorPassQueryString></Redirect>
      </RoutingRule>
      <RoutingRule><RuleNumber>3</RuleNumber>
        <Condition><KeyPrefixEquals>oss-mirror-wins/</KeyPrefixEquals></Condition>
        <Redirect><RedirectType>Mirror</RedirectType><MirrorURL>http://origin.example/</MirrorURL>
          <PassQueryString>true</PassQueryString>
          <MirrorPassQueryString>false</MirrorPassQueryString></Redirect>
      </RoutingRule>
    </RoutingRules>"#;
    let (origin, seen) = recording_origin().await;
    let mut rules = import::from_cos_xml(cos).unwrap().rules;
    rules.extend(import::from_oss_xml(oss).unwrap().rules);
    point_at(&mut rules, &origin);
    let (url, _dir) = serve_rules(rules).await;
    let client = client();
    for prefix in [
        "cos-default",
        "cos-off",
        "oss-default",
        "oss-on",
        "oss-mirror-wins",
    ] {
        let got = get(&client, &format!("{url}{prefix}/k?a=1&b=2")).await;
        assert_eq!(got.outcome(), Some("pulled"), "{prefix}");
    }
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "/cos-default/k?a=1&b=2",
            "/cos-off/k",
            "/oss-default/k",
            "/oss-on/k?a=1&b=2",
            "/oss-mirror-wins/k",
        ]
    );
}

#[test]
fn cos_fields_that_cannot_be_expressed_are_reported() {
    let xml = r#"<OriginConfiguration>
      <OriginRule>
        <RulePriority>1</RulePriority>
        <OriginType>Mirror</OriginType>
        <OriginCondition>
          <HTTPStatusCode>404</HTTPStatusCode>
          <Prefix>a/</Prefix>
          <FilterHost><ForbidHost><DomainList>
            <Domain>bucket-appid.region.myqcloud.com</Domain>
          </DomainList></ForbidHost></FilterHost>
        </OriginCondition>
        <OriginParameter>
          <Protocol>HTTPS</Protocol>
          <TransparentErrorCode>true</TransparentErrorCode>
          <HttpHeader>
            <FollowAllHeaders>false</FollowAllHeaders>
            <NewHttpHeaders>
              <Header><Key>Host</Key><Value>other.example</Value></Header>
              <Header><Key>x-token</Key><Value>t</Value></Header>
            </NewHttpHeaders>
            <FollowHttpHeaders>
              <Header><Key>origin</Key></Header>
              <Header><Key>host</Key></Header>
              <Header><Key>Range</Key></Header>
            </FollowHttpHeaders>
          </HttpHeader>
          <FollowRedirection>false</FollowRedirection>
          <HttpRedirectCode>301</HttpRedirectCode>
          <CopyOriginData>false</CopyOriginData>
          <Unheard>1</Unheard>
        </OriginParameter>
        <OriginInfo>
          <HostInfo>
            <HostName>a.example</HostName>
            <PrivateHost><Host>b.example</Host></PrivateHost>
          </HostInfo>
        </OriginInfo>
        <HTTPStandbyCode><StatusCode>403</StatusCode><StatusCode>503</StatusCode></HTTPStandbyCode>
      </OriginRule>
      <OriginRule>
        <RulePriority>2</RulePriority>
        <OriginType>Mirror</OriginType>
        <OriginInfo>
          <HostInfo><HostName>a.example</HostName></HostInfo>
          <FileInfo><SuffixConfiguration><Suffix>.jpg</Suffix><ReplacedWithSuffix>.webp</ReplacedWithSuffix></SuffixConfiguration></FileInfo>
        </OriginInfo>
      </OriginRule>
      <OriginRule>
        <RulePriority>3</RulePriority>
        <OriginType>Mirror</OriginType>
        <OriginCondition><Prefix>b/</Prefix><Method>GET</Method></OriginCondition>
        <OriginInfo><HostInfo><HostName>a.example</HostName></HostInfo></OriginInfo>
      </OriginRule>
      <OriginRule>
        <RulePriority>4</RulePriority>
        <OriginType>Mirror</OriginType>
      </OriginRule>
      <OriginRule>
        <RulePriority>5</RulePriority>
        <OriginType>Shadow</OriginType>
        <OriginInfo><HostInfo><HostName>a.example</HostName></HostInfo></OriginInfo>
      </OriginRule>
      <Extra/>
    </OriginConfiguration>"#;
    let imported = import::from_cos_xml(xml).unwrap();
    assert_eq!(
        places(&imported),
        [
            "OriginRule[1].OriginParameter.TransparentErrorCode",
            "OriginRule[1].OriginParameter.HttpHeader.FollowHttpHeaders.Header[2]",
            "OriginRule[1].OriginParameter.HttpHeader.FollowHttpHeaders.Header[3]",
            "OriginRule[1].OriginParameter.HttpHeader.NewHttpHeaders.Header[1]",
            "OriginRule[1].OriginParameter.FollowRedirection",
            "OriginRule[1].OriginParameter.HttpRedirectCode",
            "OriginRule[1].OriginParameter.CopyOriginData",
            "OriginRule[1].OriginParameter.Unheard",
            "OriginRule[1].OriginInfo.HostInfo[1].PrivateHost[1]",
            "OriginRule[3].OriginCondition.Method",
            "OriginRule[4].OriginInfo",
            "OriginRule[5].OriginType",
            "OriginConfiguration.Extra",
        ]
    );
    assert!(
        reason(
            &imported,
            "OriginRule[1].OriginParameter.HttpHeader.FollowHttpHeaders.Header[2]"
        )
        .contains("never sent to an origin")
    );
    assert!(reason(&imported, "OriginRule[1].OriginParameter.CopyOriginData").contains("proxy"));
    for dropped in [
        "OriginRule[3].OriginCondition.Method",
        "OriginRule[4].OriginInfo",
        "OriginRule[5].OriginType",
    ] {
        assert!(
            reason(&imported, dropped).ends_with("the rule is not imported"),
            "{dropped}"
        );
    }

    // The rules that are kept, with what could be expressed.
    assert_builds(&imported.rules);
    let [rule, suffix] = &imported.rules[..] else {
        panic!("{:#?}", imported.rules)
    };
    // A suffix replacement (.jpg → .webp) is a rewrite step.
    let replaced = suffix
        .rewrite
        .as_ref()
        .unwrap()
        .replace_suffix
        .as_ref()
        .unwrap();
    assert_eq!(
        (replaced.from.as_str(), replaced.to.as_str()),
        (".jpg", ".webp")
    );
    assert_eq!(rule.origin.hosts, ["https://a.example/"]);
    assert_eq!(rule.origin.follow_redirects, Some(0));
    assert_eq!(rule.origin.fail_over_on, [403]);
    assert_eq!(rule.deny_hosts, ["bucket-appid.region.myqcloud.com"]);
    assert_eq!(rule.redirect_status, None);
    let headers = rule.request_headers.as_ref().unwrap();
    assert_eq!(headers.pass_only, ["origin"]);
    assert_eq!(headers.set.keys().collect::<Vec<_>>(), ["x-token"]);
}

#[test]
fn oss_fields_that_cannot_be_expressed_are_reported() {
    let xml = r#"<RoutingRules>
      <RoutingRule>
        <RuleNumber>1</RuleNumber>
        <Condition><KeyPrefixEquals>a/</KeyPrefixEquals><HttpErrorCodeReturnedEquals>404</HttpErrorCodeReturnedEquals></Condition>
        <Redirect>
          <RedirectType>Mirror</RedirectType>
          <MirrorURL>http://example.com/</MirrorURL>
          <MirrorURLProbe>http://example.com/health</MirrorURLProbe>
          <MirrorSNI>true</MirrorSNI>
          <MirrorUsingRole>false</MirrorUsingRole>
          <MirrorFollowRedirect>false</MirrorFollowRedirect>
          <TransparentMirrorResponseCodes>404,503</TransparentMirrorResponseCodes>
          <HostName>ignored.example</HostName>
          <MirrorHeaders>
            <PassAll>true</PassAll>
            <Pass>Authorization</Pass>
            <Remove>x-debug</Remove>
          </MirrorHeaders>
        </Redirect>
      </RoutingRule>
      <RoutingRule>
        <RuleNumber>2</RuleNumber>
        <Condition><KeyPrefixEquals>b/</KeyPrefixEquals></Condition>
        <Redirect>
          <RedirectType>AliCDN</RedirectType>
          <HostName>cdn.example.com</HostName>
          <HttpRedirectCode>308</HttpRedirectCode>
          <MirrorCheckMd5>true</MirrorCheckMd5>
        </Redirect>
      </RoutingRule>
      <RoutingRule>
        <RuleNumber>3</RuleNumber>
        <Condition><KeyPrefixEquals>c/</KeyPrefixEquals></Condition>
        <Redirect><RedirectType>External</RedirectType></Redirect>
      </RoutingRule>
      <RoutingRule>
        <RuleNumber>4</RuleNumber>
        <Condition><IncludeHeader><Key>x-a</Key><Contains>b</Contains></IncludeHeader></Condition>
        <Redirect><RedirectType>Mirror</RedirectType><MirrorURL>http://example.com/</MirrorURL></Redirect>
      </RoutingRule>
      <RoutingRule>
        <RuleNumber>5</RuleNumber>
        <LuaConfig><Script>rewrite.lua</Script></LuaConfig>
        <Redirect><RedirectType>Mirror</RedirectType><MirrorURL>http://example.com/</MirrorURL></Redirect>
      </RoutingRule>
      <RoutingRule>
        <RuleNumber>6</RuleNumber>
        <Redirect>
          <RedirectType>Mirror</RedirectType>
          <MirrorURL>http://example.com/</MirrorURL>
          <ReplaceKeyWith>${bucket}/${key}</ReplaceKeyWith>
        </Redirect>
      </RoutingRule>
      <RoutingRule>
        <RuleNumber>7</RuleNumber>
        <Redirect>
          <RedirectType>Mirror</RedirectType>
          <MirrorURL>ftp://example.com/</MirrorURL>
        </Redirect>
      </RoutingRule>
    </RoutingRules>"#;
    let imported = import::from_oss_xml(xml).unwrap();
    assert_eq!(
        places(&imported),
        [
            "RoutingRule[1].Redirect.MirrorFollowRedirect",
            "RoutingRule[1].Redirect.MirrorHeaders.Pass[1]",
            "RoutingRule[1].Redirect.TransparentMirrorResponseCodes",
            "RoutingRule[1].Redirect.MirrorURLProbe",
            "RoutingRule[1].Redirect.MirrorSNI",
            "RoutingRule[1].Redirect.HostName",
            "RoutingRule[2].Redirect.RedirectType",
            "RoutingRule[2].Redirect.HttpRedirectCode",
            "RoutingRule[2].Redirect.MirrorCheckMd5",
            "RoutingRule[3].Redirect.HostName",
            "RoutingRule[4].Condition.IncludeHeader[1].Contains",
            "RoutingRule[4].Condition.IncludeHeader[1]",
            "RoutingRule[5].LuaConfig",
            "RoutingRule[6].Redirect.ReplaceKeyWith",
            "RoutingRule[7]",
        ]
    );
    assert!(
        reason(&imported, "RoutingRule[1].Redirect.MirrorHeaders.Pass[1]")
            .contains("Authorization")
    );
    assert!(reason(&imported, "RoutingRule[7]").contains("origin.hosts[0]"));
    for dropped in [
        "RoutingRule[3].Redirect.HostName",
        "RoutingRule[4].Condition.IncludeHeader[1]",
        "RoutingRule[5].LuaConfig",
        "RoutingRule[6].Redirect.ReplaceKeyWith",
        "RoutingRule[7]",
    ] {
        assert!(
            reason(&imported, dropped).ends_with("the rule is not imported"),
            "{dropped}"
        );
    }

    assert_builds(&imported.rules);
    let [mirror, cdn] = &imported.rules[..] else {
        panic!("{:#?}", imported.rules)
    };
    assert_eq!(mirror.origin.follow_redirects, Some(0));
    assert_eq!(mirror.pass_through, [503]);
    let headers = mirror.request_headers.as_ref().unwrap();
    assert_eq!(
        (headers.pass.as_deref(), &headers.except[..]),
        (Some("all"), &["x-debug".to_owned()][..])
    );
    assert_eq!(cdn.mode.as_deref(), Some("redirect"));
    assert_eq!(cdn.origin.protocol.as_deref(), Some("same"));
    assert_eq!(cdn.redirect_status, None);
    assert_eq!(cdn.checksums, None);
}

#[test]
fn documents_that_are_not_rules_are_errors() {
    for (xml, what) in [
        ("<OriginConfiguration><OriginRule>", ""),
        ("<WebsiteConfiguration/>", "not <OriginConfiguration>"),
        ("not xml", "text outside"),
    ] {
        let e = import::from_cos_xml(xml).unwrap_err().to_string();
        assert!(e.contains("COS XML") && e.contains(what), "{e}");
    }
    let e = import::from_oss_xml("<OriginConfiguration/>")
        .unwrap_err()
        .to_string();
    assert!(e.contains("OSS XML") && e.contains("<RoutingRules>"), "{e}");
    // An empty configuration is not an error: nothing to import.
    let empty = import::from_oss_xml("<WebsiteConfiguration/>").unwrap();
    assert_eq!((empty.rules.len(), empty.unsupported.len()), (0, 0));
}
