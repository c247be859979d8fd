//! The checker: from the raw file to a [`Topology`], every problem reported at its position.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::diagnostics::{Diagnostic, Severity, Source, TopologyError};
use super::model::*;
use super::raw::*;
use crate::net::Endpoint;
use crate::{DEFAULT_CACHE, Error, Flush};

impl Topology {
    /// Reads and checks the file at `path`.
    ///
    /// # Errors
    /// [`TopologyError::Read`] if it cannot be read, [`TopologyError::Invalid`] with every
    /// problem found otherwise.
    pub fn load(path: impl AsRef<Path>) -> Result<Topology, TopologyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| TopologyError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Topology::parse(&text, path)
    }

    /// Checks `text` as the file at `path` (which names it in diagnostics and anchors its
    /// relative paths; it is not read).
    ///
    /// # Errors
    /// [`TopologyError::Invalid`] with every problem found. A TOML syntax error stops at the
    /// first; every schema error (an unknown key, a value of the wrong type) is reported at once;
    /// then, in a file free of those, every other problem (unknown hub, a cycle, a node that is its
    /// own hub, duplicate names or addresses, no secret).
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Topology, TopologyError> {
        let source = Source {
            path: path.as_ref(),
            text,
        };
        // Schema errors do not stop the rest of the checks: the lines they are on are left out
        // and the file is checked without them, so one run reports every problem.
        let (raw, schema_errors) = read_raw(&source)?;
        let mut checker = Checker::new(&source);
        checker.errors.extend(schema_errors);
        checker.check(raw)
    }
}

/// For serde's "unknown field `capcity`, expected one of `capacity`, ...", the expected name
/// closest to the one written, if one is close: a help line "did you mean `capacity`?".
fn did_you_mean(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (written, expected) = rest.split_once('`')?;
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|name| (edit_distance(written, name), name))
        .min()?;
    let close = best.0 <= 2.max(written.chars().count() / 3);
    close.then(|| format!("did you mean `{}`?", best.1))
}

/// Levenshtein distance between two short names, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Schema errors reported at most, per file.
const MAX_SCHEMA_ERRORS: usize = 50;

/// The file's tables, or every schema error in it: after each error, the line it is on is blanked
/// (offsets kept, so the next error's position is the file's) and the file read again, until it
/// reads, or an error is not on a line of its own (a syntax error, a missing key, a broken table).
fn read_raw(source: &Source<'_>) -> Result<(RawFile, Vec<Diagnostic>), TopologyError> {
    let mut text = source.text.to_string();
    let mut found = Vec::new();
    loop {
        let e = match toml::from_str::<RawFile>(&text) {
            Ok(raw) => return Ok((raw, found)),
            Err(e) => e,
        };
        let span = e.span().unwrap_or(0..0);
        found.push(Diagnostic::at(
            source,
            span.clone(),
            e.message().to_string(),
            did_you_mean(e.message()),
        ));
        let line_start = text[..span.start.min(text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let line_end = text[line_start..]
            .find('\n')
            .map_or(text.len(), |i| line_start + i);
        let syntax = text.parse::<toml::Table>().is_err();
        let own_line =
            span.end <= line_end && !text[line_start..line_end].trim_start().starts_with('[');
        if syntax || span.is_empty() || !own_line || found.len() >= MAX_SCHEMA_ERRORS {
            return Err(TopologyError::Invalid(found));
        }
        // Blank the line, keeping every byte offset (and newline) where it was; if that breaks
        // the syntax (the line was part of a longer value), what was found is all there is.
        let blank = " ".repeat(line_end - line_start);
        text.replace_range(line_start..line_end, &blank);
        if text.parse::<toml::Table>().is_err() {
            return Err(TopologyError::Invalid(found));
        }
    }
}

pub(super) struct Checker<'a> {
    pub(super) source: &'a Source<'a>,
    pub(super) dir: PathBuf,
    pub(super) errors: Vec<Diagnostic>,
    pub(super) warnings: Vec<Diagnostic>,
    /// Where `[cluster.tls]` names its CA.
    pub(super) ca_span: Range<usize>,
}

/// A node as read, with the spans the cross-node checks point at.
pub(super) struct Placed {
    pub(super) spec: NodeSpec,
    pub(super) name: Range<usize>,
    pub(super) shard: Option<Range<usize>>,
    pub(super) hub: Option<Range<usize>>,
    pub(super) listen: Option<Range<usize>>,
    pub(super) resp: Option<Range<usize>>,
    pub(super) http: Option<Range<usize>>,
    pub(super) unix: Option<Range<usize>>,
    pub(super) tls: Option<Range<usize>>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(source: &'a Source<'a>) -> Self {
        let dir = source
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Checker {
            source,
            dir,
            errors: Vec::new(),
            warnings: Vec::new(),
            ca_span: 0..0,
        }
    }

    pub(super) fn error(
        &mut self,
        span: Range<usize>,
        message: String,
        help: impl Into<Option<String>>,
    ) {
        let d = Diagnostic::at(self.source, span, message, help.into());
        self.errors.push(d);
    }

    pub(super) fn warn(
        &mut self,
        span: Range<usize>,
        message: String,
        help: impl Into<Option<String>>,
    ) {
        let mut d = Diagnostic::at(self.source, span, message, help.into());
        d.severity = Severity::Warning;
        self.warnings.push(d);
    }

    pub(super) fn check(mut self, mut raw: RawFile) -> Result<Topology, TopologyError> {
        let raw_tls = raw.cluster.as_mut().and_then(|c| c.get_mut().tls.take());
        let tls = raw_tls.map(|t| self.tls(t));
        let (cluster, secret, secret_span) = self.cluster(raw.cluster);
        let defaults = raw.defaults.unwrap_or_default();
        let connection_timeout = defaults.connection_timeout.as_ref().map(|t| t.get_ref().0);
        let anti_entropy = defaults.anti_entropy.as_ref().map(|t| t.get_ref().0);
        let defaults = self.cache_settings(&defaults);
        let mut caches = vec![(DEFAULT_CACHE.to_string(), defaults.clone())];
        for (name, raw_cache) in &raw.caches {
            if let Some(t) = &raw_cache.connection_timeout {
                self.error(
                    t.span(),
                    "connection_timeout is a node setting, not a cache's".into(),
                    "set it under [defaults]".to_string(),
                );
            }
            if let Some(t) = &raw_cache.anti_entropy {
                self.error(
                    t.span(),
                    "anti_entropy is a node setting, not a cache's".into(),
                    "set it under [defaults]".to_string(),
                );
            }
            let settings = self.cache_settings(raw_cache).over(&defaults);
            if name.get_ref().trim().is_empty() {
                self.error(
                    name.span(),
                    "a cache name cannot be empty".into(),
                    "name it: [caches.sessions]".to_string(),
                );
            } else if name.get_ref() == DEFAULT_CACHE {
                caches[0].1 = settings;
            } else {
                caches.push((name.get_ref().clone(), settings));
            }
        }
        if raw.node.is_empty() {
            self.error(
                self.source.text.len()..self.source.text.len(),
                "the topology has no nodes".into(),
                "add at least one [[node]] table with a name".to_string(),
            );
        }
        let placed: Vec<Placed> = raw.node.into_iter().map(|n| self.node(n)).collect();
        self.cross_check(&placed);
        self.tls_of_nodes(tls.as_ref(), &placed);
        if !self.errors.is_empty() {
            // Every error in file order, then the warnings: one run says everything.
            self.errors.sort_by_key(|d| (d.line, d.column));
            self.warnings.sort_by_key(|d| (d.line, d.column));
            self.errors.append(&mut self.warnings);
            return Err(TopologyError::Invalid(self.errors));
        }
        Ok(Topology {
            path: self.source.path.to_path_buf(),
            source: self.source.text.to_string(),
            cluster,
            secret,
            secret_span,
            connection_timeout,
            anti_entropy,
            tls,
            caches,
            name_spans: placed.iter().map(|p| p.name.clone()).collect(),
            nodes: placed.into_iter().map(|p| p.spec).collect(),
            warnings: self.warnings,
            ca_span: self.ca_span,
            password: None,
        })
    }

    pub(super) fn cluster(
        &mut self,
        raw: Option<Spanned<RawCluster>>,
    ) -> (String, SecretSource, Range<usize>) {
        let missing_help = "add to [cluster] one of: secret_env = \"LEAFCACHE_SECRET\", \
                            secret_file = \"secret.txt\", or (development only) secret = \"...\"";
        let Some(raw) = raw else {
            self.error(
                0..0,
                "the topology has no [cluster] table, so no cluster secret".into(),
                missing_help.to_string(),
            );
            return (
                crate::DEFAULT_CLUSTER.into(),
                SecretSource::Env(String::new()),
                0..0,
            );
        };
        let span = raw.span();
        let raw = raw.into_inner();
        let name = match raw.name {
            Some(n) if n.get_ref().trim().is_empty() => {
                self.error(n.span(), "the cluster name cannot be empty".into(), None);
                String::new()
            }
            Some(n) => n.into_inner(),
            None => crate::DEFAULT_CLUSTER.into(),
        };
        let mut given: Vec<(SecretSource, Range<usize>)> = Vec::new();
        if let Some(s) = raw.secret {
            if s.get_ref().is_empty() {
                self.error(s.span(), "the cluster secret is empty".into(), None);
            }
            self.warn(
                s.span(),
                "the cluster secret is written in the topology file: fine for development only"
                    .into(),
                "in production use secret_env or secret_file".to_string(),
            );
            given.push((SecretSource::Inline(s.get_ref().clone()), s.span()));
        }
        if let Some(v) = raw.secret_env {
            if v.get_ref().is_empty() || v.get_ref().contains('=') {
                self.error(
                    v.span(),
                    format!("{:?} is not an environment variable name", v.get_ref()),
                    None,
                );
            }
            if std::env::var_os(v.get_ref()).is_none() {
                self.warn(
                    v.span(),
                    format!("{} is not set here", v.get_ref()),
                    "a node started from this environment would refuse to start".to_string(),
                );
            }
            given.push((SecretSource::Env(v.get_ref().clone()), v.span()));
        }
        if let Some(f) = raw.secret_file {
            let path = self.dir.join(f.get_ref());
            self.check_secret_file(&path, f.span());
            given.push((SecretSource::File(path), f.span()));
        }
        match given.len() {
            0 => {
                self.error(
                    span.clone(),
                    "the cluster has no secret".into(),
                    missing_help.to_string(),
                );
                (name, SecretSource::Env(String::new()), span)
            }
            1 => {
                let (s, span) = given.pop().expect("one");
                (name, s, span)
            }
            _ => {
                self.error(
                    given[1].1.clone(),
                    "the cluster secret is given more than once".into(),
                    "keep one of secret, secret_env, secret_file".to_string(),
                );
                let (s, span) = given.swap_remove(0);
                (name, s, span)
            }
        }
    }

    /// `[cluster.tls]`: a CA, and a certificate with its key or neither (then every node names
    /// its own). The files are not read here: `leafcache certs` makes them from this file, and
    /// `leafcache check` reads them.
    pub(super) fn tls(&mut self, raw: Spanned<RawTls>) -> ClusterTls {
        let span = raw.span();
        let raw = raw.into_inner();
        let path = |p: &Option<Spanned<String>>| p.as_ref().map(|p| self.dir.join(p.get_ref()));
        let (ca, cert, key) = (path(&raw.ca), path(&raw.cert), path(&raw.key));
        self.ca_span = raw.ca.as_ref().map_or(span.clone(), Spanned::span);
        if ca.is_none() {
            self.error(
                span.clone(),
                "[cluster.tls] has no ca".into(),
                "add ca = \"certs/ca.pem\", the CA that signs every node's certificate (`leafcache certs FILE` makes one for development)".to_string(),
            );
        }
        match (&raw.cert, &raw.key) {
            (Some(c), None) => self.error(
                c.span(),
                "cert without key".into(),
                "add key = \"certs/node-key.pem\" beside it".to_string(),
            ),
            (None, Some(k)) => self.error(
                k.span(),
                "key without cert".into(),
                "add cert = \"certs/node.pem\" beside it".to_string(),
            ),
            _ => {}
        }
        ClusterTls {
            ca: ca.unwrap_or_default(),
            cert,
            key,
            doors: raw.doors.is_some_and(|d| *d.get_ref()),
        }
    }

    /// Every node of a TLS cluster has a certificate and key (its own or the cluster's); a
    /// node's own is given as a pair, and only in a TLS cluster.
    pub(super) fn tls_of_nodes(&mut self, tls: Option<&ClusterTls>, nodes: &[Placed]) {
        for n in nodes {
            let (cert, key) = (&n.spec.tls_cert, &n.spec.tls_key);
            let span = n.tls.clone().unwrap_or_else(|| n.name.clone());
            match tls {
                None if cert.is_some() || key.is_some() => self.error(
                    span,
                    "tls_cert/tls_key without [cluster.tls]".into(),
                    "add [cluster.tls] with the ca that signed it".to_string(),
                ),
                None => {}
                Some(_) if cert.is_some() != key.is_some() => self.error(
                    span,
                    "tls_cert and tls_key go together".into(),
                    "give both, or neither to use [cluster.tls]'s".to_string(),
                ),
                Some(t) if cert.is_none() && t.cert.is_none() => self.error(
                    n.name.clone(),
                    format!("node {:?} has no TLS certificate", n.spec.name),
                    "give it tls_cert and tls_key, or set cert and key in [cluster.tls]"
                        .to_string(),
                ),
                Some(_) => {}
            }
        }
    }

    /// Warns about a secret file that is missing or that other users can read.
    pub(super) fn check_secret_file(&mut self, path: &Path, span: Range<usize>) {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Err(e) => self.warn(
                span,
                format!("cannot read {} here: {e}", path.display()),
                "a node started on this machine would refuse to start".to_string(),
            ),
            Ok(m) if m.permissions().mode() & 0o077 != 0 => self.warn(
                span,
                format!(
                    "{} is readable by other users (mode {:o})",
                    path.display(),
                    m.permissions().mode() & 0o777
                ),
                format!("chmod 600 {}", path.display()),
            ),
            Ok(_) => {}
        }
    }

    pub(super) fn cache_settings(&mut self, raw: &RawCache) -> CacheTableConfig {
        if let Some(c) = &raw.capacity
            && *c.get_ref() == 0
        {
            self.error(c.span(), "capacity must be at least 1 entry".into(), None);
        }
        let eviction = raw.eviction.as_ref().and_then(|e| {
            e.get_ref()
                .parse::<crate::cache::Eviction>()
                .map_err(|_| {
                    self.error(
                        e.span(),
                        format!("{:?} is not an eviction policy", e.get_ref()),
                        "eviction is \"lru\" (the default), \"lfu\" or \"s3fifo\"".to_string(),
                    );
                })
                .ok()
        });
        if let Some(o) = &raw.origin
            && let Err(e) = crate::Origin::new(o.get_ref(), crate::cache::DEFAULT_ORIGIN_TIMEOUT)
        {
            self.error(
                o.span(),
                e.to_string(),
                "origin is \"http://host:port/path/{key}\" or \"file:/dir/{key}\"".to_string(),
            );
        }
        CacheTableConfig {
            origin: raw.origin.as_ref().map(|o| o.get_ref().clone()),
            origin_timeout: raw.origin_timeout.as_ref().map(|t| t.0),
            capacity: raw.capacity.as_ref().map(|c| *c.get_ref()),
            max_bytes: raw.max_bytes.as_ref().map(|s| s.0),
            ttl: raw.ttl.as_ref().map(|t| t.0),
            tombstone_ttl: raw.tombstone_ttl.as_ref().map(|t| t.0),
            eviction,
        }
    }

    pub(super) fn node(&mut self, raw: Spanned<RawNode>) -> Placed {
        let raw = raw.into_inner();
        let name = raw.name.get_ref().trim().to_string();
        if name.is_empty() || name.contains(char::is_whitespace) {
            self.error(
                raw.name.span(),
                format!("{:?} is not a node name", raw.name.get_ref()),
                "a node name is a non-empty word, e.g. \"leaf-a\"".to_string(),
            );
        }
        // `join` keeps an absolute path as it is and puts a relative one under the base.
        let root = raw.root.as_ref().map(|r| self.dir.join(r.get_ref()));
        let socket_base = root.clone().unwrap_or_else(|| self.dir.clone());
        let listen = raw.listen.as_ref().and_then(|l| {
            let value = l.get_ref().trim();
            let value = match value.strip_prefix("unix:") {
                Some(p) if !p.is_empty() => {
                    format!("unix:{}", socket_base.join(p).display())
                }
                _ => value.to_string(),
            };
            match Endpoint::parse("listen", &value) {
                Ok(_) => Some(value),
                Err(e) => {
                    self.error(l.span(), reason(&e), None);
                    None
                }
            }
        });
        let advertise = raw.advertise.as_ref().and_then(|a| {
            let value = a.get_ref().trim();
            if raw.listen.is_none() {
                self.error(
                    a.span(),
                    "advertise without listen: only a hub has an address to advertise".into(),
                    "add listen = \"0.0.0.0:PORT\", or remove advertise".to_string(),
                );
            }
            match Endpoint::parse("advertise", value) {
                Ok(_) => Some(value.to_string()),
                Err(e) => {
                    self.error(a.span(), reason(&e), None);
                    None
                }
            }
        });
        let mut hubs: Vec<HubRef> = Vec::new();
        if let Some(h) = &raw.hub {
            for value in &h.get_ref().0 {
                let value = value.trim();
                let hub = if value.contains(':') {
                    match Endpoint::parse("hub", value) {
                        Ok(_) => HubRef::Address(value.to_string()),
                        Err(e) => {
                            self.error(h.span(), reason(&e), None);
                            continue;
                        }
                    }
                } else {
                    HubRef::Node(value.to_string())
                };
                if hubs.contains(&hub) {
                    self.error(
                        h.span(),
                        format!("hub {value:?} is listed twice"),
                        "list each hub once, in order of preference".to_string(),
                    );
                    continue;
                }
                hubs.push(hub);
            }
        }
        let mut hubs = hubs.into_iter();
        let hub = hubs.next();
        let fallback_hubs: Vec<HubRef> = hubs.collect();
        let door = |checker: &mut Self, what: &'static str, d: &Option<Spanned<String>>| {
            d.as_ref().and_then(
                |d| match crate::server::door_address(what, d.get_ref().trim()) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        checker.error(
                            d.span(),
                            reason(&e),
                            "a door is host:port, or a bare port for 127.0.0.1".to_string(),
                        );
                        None
                    }
                },
            )
        };
        let resp = door(self, "resp", &raw.resp);
        let http = door(self, "http", &raw.http);
        let unix = raw.unix.as_ref().map(|u| socket_base.join(u.get_ref()));
        if let Some(l) = &raw.loglevel
            && let Err(e) = check_loglevel(l.get_ref())
        {
            self.error(
                l.span(),
                format!("invalid loglevel {:?}: {e}", l.get_ref()),
                "use error, warn, info, debug or trace, or a filter like \"leafcache=debug\""
                    .to_string(),
            );
        }
        let flush = raw
            .flush
            .as_ref()
            .and_then(|f| match f.get_ref().parse::<Flush>() {
                Ok(flush) => Some(flush),
                Err(e) => {
                    self.error(
                        f.span(),
                        e.to_string(),
                        "use \"always\", \"never\", or a period such as \"100ms\"".to_string(),
                    );
                    None
                }
            });
        if raw.root.is_none() {
            for (key, span) in [
                ("snapshot", raw.snapshot.as_ref().map(Spanned::span)),
                ("flush", raw.flush.as_ref().map(Spanned::span)),
            ] {
                if let Some(span) = span {
                    self.error(
                        span,
                        format!("{key} without root: this node keeps no data on disk"),
                        "add root = \"data/NODE\", or remove it".to_string(),
                    );
                }
            }
        }
        let shard = raw.shard.as_ref().and_then(|sh| {
            let value = sh.get_ref().trim();
            if value.is_empty() || value.contains(char::is_whitespace) {
                self.error(
                    sh.span(),
                    format!("{:?} is not a shard name", sh.get_ref()),
                    "a shard name is a non-empty word, e.g. \"eu-1\"".to_string(),
                );
                None
            } else {
                Some(value.to_string())
            }
        });
        Placed {
            spec: NodeSpec {
                name,
                shard,
                listen,
                hub,
                fallback_hubs,
                resp,
                http,
                unix,
                root,
                snapshot: raw.snapshot.as_ref().map(|s| s.get_ref().0),
                flush,
                loglevel: raw.loglevel.map(Spanned::into_inner),
                advertise,
                tls_cert: raw.tls_cert.as_ref().map(|c| self.dir.join(c.get_ref())),
                tls_key: raw.tls_key.as_ref().map(|k| self.dir.join(k.get_ref())),
            },
            tls: (raw.tls_cert.as_ref().or(raw.tls_key.as_ref())).map(Spanned::span),
            name: raw.name.span(),
            shard: raw.shard.as_ref().map(Spanned::span),
            hub: raw.hub.as_ref().map(Spanned::span),
            listen: raw.listen.as_ref().map(Spanned::span),
            resp: raw.resp.as_ref().map(Spanned::span),
            http: raw.http.as_ref().map(Spanned::span),
            unix: raw.unix.as_ref().map(Spanned::span),
        }
    }

    pub(super) fn cross_check(&mut self, nodes: &[Placed]) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            if let Some(&first) = names.get(n.spec.name.as_str()) {
                let line =
                    Diagnostic::at(self.source, nodes[first].name.clone(), String::new(), None)
                        .line;
                self.error(
                    n.name.clone(),
                    format!(
                        "a second node is named {:?} (the first is on line {line})",
                        n.spec.name
                    ),
                    "node names must be unique".to_string(),
                );
            } else {
                names.insert(&n.spec.name, i);
            }
        }
        self.shards(nodes, &names);
        let known = nodes
            .iter()
            .map(|n| n.spec.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut warned = std::collections::HashSet::new();
        for (n, hub) in nodes
            .iter()
            .flat_map(|n| n.spec.hubs().map(move |h| (n, h)))
        {
            let (HubRef::Node(hub), Some(span)) = (hub, &n.hub) else {
                continue;
            };
            if *hub == n.spec.name {
                self.error(
                    span.clone(),
                    format!("node {:?} is its own hub", n.spec.name),
                    "name another node, or remove `hub` to make this node a root".to_string(),
                );
                continue;
            }
            match names.get(hub.as_str()) {
                None => self.error(
                    span.clone(),
                    format!("unknown hub {hub:?}"),
                    format!(
                        "hub is the name of a node in this file ({known}) or the host:port of a hub elsewhere"
                    ),
                ),
                Some(&h) if nodes[h].spec.listen.is_none() && nodes[h].listen.is_none() => self
                    .error(
                        span.clone(),
                        format!("hub {hub:?} has no listen address, so {:?} cannot link to it", n.spec.name),
                        format!("add listen = \"127.0.0.1:PORT\" to the node {hub:?}"),
                    ),
                Some(&h) => {
                    let target = &nodes[h];
                    if target.spec.advertise.is_none()
                        && let (Some(listen), Some(at)) = (&target.spec.listen, &target.listen)
                        && is_unspecified(listen)
                        && warned.insert(h)
                    {
                        self.warn(
                            at.clone(),
                            format!(
                                "{listen} accepts on every interface, but leaves dial it as written, which reaches only this host"
                            ),
                            "add advertise = \"HOST:PORT\": the address the leaves should dial".to_string(),
                        );
                    }
                }
            }
        }
        // Cycles over every hub of every list (a leaf may fail over to any of them, so each
        // is an edge): a walk that comes back to a node already on it is a cycle, reported
        // once, at the first of its nodes in the file.
        let edges: Vec<Vec<usize>> = (nodes.iter())
            .map(|n| {
                (n.spec.hubs())
                    .filter_map(|h| match h {
                        HubRef::Node(h) => names.get(h.as_str()).copied(),
                        HubRef::Address(_) => None,
                    })
                    .collect()
            })
            .collect();
        let mut reported = vec![false; nodes.len()];
        let mut done = vec![false; nodes.len()];
        let mut cycles = Vec::new();
        for start in 0..nodes.len() {
            find_cycles(start, &edges, &mut vec![start], &mut done, &mut cycles);
        }
        for cycle in cycles {
            if cycle.iter().any(|&c| reported[c]) {
                continue;
            }
            let first = *cycle.iter().min().expect("non-empty");
            let mut names_in: Vec<&str> =
                cycle.iter().map(|&c| nodes[c].spec.name.as_str()).collect();
            names_in.push(names_in[0]);
            let several = cycle
                .iter()
                .any(|&c| !nodes[c].spec.fallback_hubs.is_empty());
            self.error(
                nodes[first].hub.clone().unwrap_or(0..0),
                format!(
                    "hubs {} a cycle: {}",
                    if several { "could form" } else { "form" },
                    names_in.join(" -> ")
                ),
                if several {
                    "a node's hubs, fallbacks included, must all be above it: remove one of these from a hub list"
                } else {
                    "a tree needs a root: remove `hub` from one of these nodes"
                }
                .to_string(),
            );
            for &c in &cycle {
                reported[c] = true;
            }
        }
        // Addresses: every bound address once across the file (port 0 is the OS's choice).
        let mut seen: HashMap<String, (String, &'static str)> = HashMap::new();
        for n in nodes {
            let spans = [
                ("listen", n.spec.listen.clone(), n.listen.clone()),
                ("resp", n.spec.resp.clone(), n.resp.clone()),
                ("http", n.spec.http.clone(), n.http.clone()),
                (
                    "unix",
                    n.spec
                        .unix
                        .as_ref()
                        .map(|p| format!("unix:{}", p.display())),
                    n.unix.clone(),
                ),
            ];
            for (what, addr, span) in spans {
                let Some(addr) = addr else { continue };
                if addr.ends_with(":0") {
                    continue;
                }
                if let Some((other, other_what)) = seen.get(&addr) {
                    self.error(
                        span.unwrap_or_else(|| n.name.clone()),
                        format!("{addr} is already used by node {other:?} ({other_what})"),
                        "every listen, resp, http and unix address must be unique".to_string(),
                    );
                } else {
                    seen.insert(addr, (n.spec.name.clone(), what));
                }
            }
        }
    }
}

/// A log filter: a level, or `target=level` directives. A bare word that is not a level would be
/// read by `EnvFilter` as a target name (so `"verbose"` would silence everything): refused.
pub(super) fn check_loglevel(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    for directive in filter.split(',').map(str::trim) {
        if !directive.contains('=') && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(format!("{directive:?} is not a level"));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// `0.0.0.0:port` or `[::]:port`: bound on every interface, reachable by that name from nowhere
/// but this host.
pub(super) fn is_unspecified(addr: &str) -> bool {
    addr.trim()
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_unspecified())
}

/// The reason of a config error, without the `invalid <what>:` its Display puts first.
pub(super) fn reason(e: &Error) -> String {
    match e {
        Error::InvalidConfig { what, reason } => format!("invalid {what}: {reason}"),
        other => other.to_string(),
    }
}

/// Every cycle reachable from the last node of `path` along `edges` (a node's hubs), each as the
/// nodes on it; `done` marks nodes from which every walk was already followed.
fn find_cycles(
    at: usize,
    edges: &[Vec<usize>],
    path: &mut Vec<usize>,
    done: &mut [bool],
    cycles: &mut Vec<Vec<usize>>,
) {
    if done[at] {
        return;
    }
    for &next in &edges[at] {
        if next == at {
            continue; // its own hub: reported on its own
        }
        if let Some(pos) = path.iter().position(|&p| p == next) {
            cycles.push(path[pos..].to_vec());
            continue;
        }
        path.push(next);
        find_cycles(next, edges, path, done, cycles);
        path.pop();
    }
    done[at] = true;
}
