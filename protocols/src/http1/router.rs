//! A small, fast request router: method + path with parameters, sans-I/O and pure.
//!
//! Patterns are paths made of `/`-separated segments:
//!
//! - a static segment matches itself exactly (`/users`);
//! - `:name` matches one non-empty segment and captures it (`/users/:id`);
//! - `*name`, only as the last segment, matches the rest of the path, slashes included,
//!   possibly empty (`/files/*path` matches `/files/`, `/files/a/b`, not `/files`).
//!
//! Routes are kept in a segment trie. A lookup walks it depth first, preferring at every
//! segment a static child, then a parameter, then a wildcard, and backtracks when a branch
//! does not lead to a route for the request's method; so the most specific route wins
//! (`/users/new` before `/users/:id`) whatever the order of registration. A path that matches
//! some route but none for the method is reported as [`RouteMiss::MethodNotAllowed`] (405);
//! `HEAD` falls back to a `GET` route of the same pattern. A query string (`?...`) is ignored.
//!
//! The lookup does not allocate: captured values are slices of the request's path kept in a
//! fixed array (at most [`MAX_PARAMS`] captures per route, checked at registration). Values are
//! raw (not percent-decoded).
//!
//! ```
//! use sinew_protocols::http1::{Method, Router};
//!
//! let mut router = Router::new();
//! router.insert(Method::Get, "/users/:id", "user")?;
//! router.insert(Method::Get, "/users/new", "form")?;
//! router.insert(Method::Get, "/static/*path", "file")?;
//!
//! let m = router.at(&Method::Get, "/users/42?verbose=1").expect("routed");
//! assert_eq!((*m.value, m.params.get("id")), ("user", Some("42")));
//! assert_eq!(*router.at(&Method::Get, "/users/new").expect("routed").value, "form");
//! let m = router.at(&Method::Get, "/static/css/site.css").expect("routed");
//! assert_eq!(m.params.get("path"), Some("css/site.css"));
//! assert_eq!(router.at(&Method::Post, "/users/42").err().map(|e| e.status()), Some(405));
//! # Ok::<(), sinew_protocols::http1::RouteError>(())
//! ```

use std::fmt;

use super::message::{Method, Request};

/// Most captures (`:name` and `*name`) one route may have.
pub const MAX_PARAMS: usize = 8;

/// A pattern could not be registered.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// The pattern does not start with `/`.
    #[error("route pattern {0:?} must start with '/'")]
    NoLeadingSlash(String),
    /// A `:` or `*` segment has no name, or a name with characters other than
    /// ASCII letters, digits and `_`.
    #[error("route pattern {0:?} has a capture without a valid name")]
    BadName(String),
    /// A `*name` segment is not the last one.
    #[error("route pattern {0:?} has a wildcard before its last segment")]
    WildcardNotLast(String),
    /// Two captures of one pattern share a name.
    #[error("route pattern {0:?} uses a capture name twice")]
    DuplicateName(String),
    /// More than [`MAX_PARAMS`] captures.
    #[error("route pattern {0:?} has more than {MAX_PARAMS} captures")]
    TooManyParams(String),
    /// A static segment contains `?` (queries are not part of routing).
    #[error("route pattern {0:?} contains '?'")]
    Query(String),
    /// The same method and pattern shape (capture names aside) is already registered.
    #[error("route {method} {pattern:?} conflicts with an existing route")]
    Conflict {
        /// The method.
        method: String,
        /// The pattern.
        pattern: String,
    },
}

/// Why a lookup found no route.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMiss {
    /// No pattern matches the path.
    #[error("no route matches the path")]
    NotFound,
    /// Some pattern matches the path, but none for this method.
    #[error("the path has no route for this method")]
    MethodNotAllowed,
}

impl RouteMiss {
    /// The HTTP status for the miss: 404 or 405.
    pub fn status(self) -> u16 {
        match self {
            RouteMiss::NotFound => 404,
            RouteMiss::MethodNotAllowed => 405,
        }
    }
}

/// Values captured by a match, named by the route's pattern.
#[derive(Clone, Copy)]
pub struct Params<'r, 'p> {
    names: &'r [Box<str>],
    values: [&'p str; MAX_PARAMS],
}

impl<'r, 'p> Params<'r, 'p> {
    /// The value captured as `name`.
    pub fn get(&self, name: &str) -> Option<&'p str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// `(name, value)` pairs in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&'r str, &'p str)> + '_ {
        self.names
            .iter()
            .zip(self.values.iter())
            .map(|(n, v)| (&**n, *v))
    }

    /// Number of captures.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the route captured nothing.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

impl fmt::Debug for Params<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A successful lookup: the route's value and what its pattern captured.
#[derive(Debug, Clone, Copy)]
pub struct Match<'r, 'p, T> {
    /// The value registered with the route.
    pub value: &'r T,
    /// The captured path parameters.
    pub params: Params<'r, 'p>,
}

#[derive(Debug)]
struct Endpoint {
    method: Method,
    /// Capture names in pattern order.
    names: Box<[Box<str>]>,
    /// Index into `Router::values`.
    value: usize,
}

#[derive(Debug, Default)]
struct Node {
    /// Static children, sorted by segment for binary search.
    statics: Vec<(Box<str>, Node)>,
    /// The `:name` child (names live in endpoints, so different routes may name it differently).
    param: Option<Box<Node>>,
    /// Routes whose pattern ends here.
    here: Vec<Endpoint>,
    /// Routes whose pattern ends with a wildcard after this node.
    wildcard: Vec<Endpoint>,
}

/// Picks the endpoint for `method`: exact, or `GET` for `HEAD`.
fn pick<'e>(endpoints: &'e [Endpoint], method: &Method) -> Option<&'e Endpoint> {
    endpoints
        .iter()
        .find(|e| e.method == *method)
        .or_else(|| match method {
            Method::Head => endpoints.iter().find(|e| e.method == Method::Get),
            _ => None,
        })
}

enum Seg<'a> {
    Static(&'a str),
    Param(&'a str),
    Wildcard(&'a str),
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn parse_pattern(pattern: &str) -> Result<Vec<Seg<'_>>, RouteError> {
    let Some(rest) = pattern.strip_prefix('/') else {
        return Err(RouteError::NoLeadingSlash(pattern.into()));
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let last = parts.len() - 1;
    let mut segs = Vec::with_capacity(parts.len());
    let mut names: Vec<&str> = Vec::new();
    for (i, part) in parts.into_iter().enumerate() {
        let seg = if let Some(name) = part.strip_prefix(':') {
            Seg::Param(name)
        } else if let Some(name) = part.strip_prefix('*') {
            if i != last {
                return Err(RouteError::WildcardNotLast(pattern.into()));
            }
            Seg::Wildcard(name)
        } else if part.contains('?') {
            return Err(RouteError::Query(pattern.into()));
        } else {
            Seg::Static(part)
        };
        if let Seg::Param(name) | Seg::Wildcard(name) = seg {
            if !valid_name(name) {
                return Err(RouteError::BadName(pattern.into()));
            }
            if names.contains(&name) {
                return Err(RouteError::DuplicateName(pattern.into()));
            }
            names.push(name);
        }
        segs.push(seg);
    }
    if names.len() > MAX_PARAMS {
        return Err(RouteError::TooManyParams(pattern.into()));
    }
    Ok(segs)
}

/// A method + path router holding one value of type `T` per route.
pub struct Router<T> {
    root: Node,
    values: Vec<T>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Router {
            root: Node::default(),
            values: Vec::new(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Router<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.values.len())
            .finish_non_exhaustive()
    }
}

impl<T> Router<T> {
    /// An empty router.
    pub fn new() -> Self {
        Router::default()
    }

    /// Number of registered routes.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no route is registered.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Registers `value` for `method` and `pattern` (see the module docs for the syntax).
    pub fn insert(&mut self, method: Method, pattern: &str, value: T) -> Result<(), RouteError> {
        let segs = parse_pattern(pattern)?;
        let mut names: Vec<Box<str>> = Vec::new();
        let mut node = &mut self.root;
        let mut wildcard = false;
        for seg in segs {
            match seg {
                Seg::Static(s) => {
                    let i = match node.statics.binary_search_by(|(k, _)| (**k).cmp(s)) {
                        Ok(i) => i,
                        Err(i) => {
                            node.statics.insert(i, (s.into(), Node::default()));
                            i
                        }
                    };
                    node = &mut node.statics[i].1;
                }
                Seg::Param(name) => {
                    names.push(name.into());
                    node = node.param.get_or_insert_with(Box::default);
                }
                Seg::Wildcard(name) => {
                    names.push(name.into());
                    wildcard = true;
                }
            }
        }
        let list = if wildcard {
            &mut node.wildcard
        } else {
            &mut node.here
        };
        if list.iter().any(|e| e.method == method) {
            return Err(RouteError::Conflict {
                method: method.to_string(),
                pattern: pattern.into(),
            });
        }
        list.push(Endpoint {
            method,
            names: names.into_boxed_slice(),
            value: self.values.len(),
        });
        self.values.push(value);
        Ok(())
    }

    /// Finds the route for `method` and `path` (a query string is ignored).
    pub fn at<'r, 'p>(
        &'r self,
        method: &Method,
        path: &'p str,
    ) -> Result<Match<'r, 'p, T>, RouteMiss> {
        let path = match path.find('?') {
            Some(i) => &path[..i],
            None => path,
        };
        let Some(rest) = path.strip_prefix('/') else {
            return Err(RouteMiss::NotFound);
        };
        let mut walk = Walk {
            method,
            values: [""; MAX_PARAMS],
            path_matched: false,
        };
        match walk.node(&self.root, Some(rest), 0) {
            Some(e) => Ok(Match {
                value: self.values.get(e.value).ok_or(RouteMiss::NotFound)?,
                params: Params {
                    names: &e.names,
                    values: walk.values,
                },
            }),
            None if walk.path_matched => Err(RouteMiss::MethodNotAllowed),
            None => Err(RouteMiss::NotFound),
        }
    }

    /// Finds the route for a request (its method and target). A target that is not UTF-8 or
    /// not in origin form (`/path?query`) finds nothing.
    pub fn route<'r, 'p>(&'r self, request: &'p Request) -> Result<Match<'r, 'p, T>, RouteMiss> {
        let path = std::str::from_utf8(request.target()).map_err(|_| RouteMiss::NotFound)?;
        self.at(&request.method, path)
    }
}

struct Walk<'m, 'p> {
    method: &'m Method,
    values: [&'p str; MAX_PARAMS],
    path_matched: bool,
}

impl<'p> Walk<'_, 'p> {
    /// Matches `rest` (the path after the separator that led to `node`; `None` once the path
    /// is used up) below `node`, with `depth` captures taken so far.
    fn node<'r>(
        &mut self,
        node: &'r Node,
        rest: Option<&'p str>,
        depth: usize,
    ) -> Option<&'r Endpoint> {
        let Some(rest) = rest else {
            return self.end(&node.here);
        };
        let (seg, next) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        if let Ok(i) = node.statics.binary_search_by(|(k, _)| (**k).cmp(seg)) {
            if let Some(found) = self.node(&node.statics[i].1, next, depth) {
                return Some(found);
            }
        }
        if let (Some(child), false, true) = (&node.param, seg.is_empty(), depth < MAX_PARAMS) {
            self.values[depth] = seg;
            if let Some(found) = self.node(child, next, depth + 1) {
                return Some(found);
            }
        }
        if !node.wildcard.is_empty() && depth < MAX_PARAMS {
            self.values[depth] = rest;
            return self.end(&node.wildcard);
        }
        None
    }

    fn end<'r>(&mut self, endpoints: &'r [Endpoint]) -> Option<&'r Endpoint> {
        if endpoints.is_empty() {
            return None;
        }
        self.path_matched = true;
        pick(endpoints, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn router(routes: &[(Method, &str)]) -> Router<usize> {
        let mut r = Router::new();
        for (i, (m, p)) in routes.iter().enumerate() {
            r.insert(m.clone(), p, i).expect("valid route");
        }
        r
    }

    fn hit(r: &Router<usize>, m: Method, path: &str) -> Option<(usize, Vec<(String, String)>)> {
        r.at(&m, path).ok().map(|x| {
            (
                *x.value,
                x.params
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            )
        })
    }

    #[test]
    fn static_param_and_wildcard_routes() {
        let r = router(&[
            (Method::Get, "/"),
            (Method::Get, "/users"),
            (Method::Get, "/users/:id"),
            (Method::Get, "/users/:id/posts/:post"),
            (Method::Get, "/files/*path"),
        ]);
        assert_eq!(hit(&r, Method::Get, "/"), Some((0, vec![])));
        assert_eq!(hit(&r, Method::Get, "/users"), Some((1, vec![])));
        assert_eq!(
            hit(&r, Method::Get, "/users/7"),
            Some((2, vec![("id".into(), "7".into())]))
        );
        assert_eq!(
            hit(&r, Method::Get, "/users/7/posts/x-1"),
            Some((
                3,
                vec![("id".into(), "7".into()), ("post".into(), "x-1".into())]
            ))
        );
        assert_eq!(
            hit(&r, Method::Get, "/files/a/b.txt"),
            Some((4, vec![("path".into(), "a/b.txt".into())]))
        );
        assert_eq!(
            hit(&r, Method::Get, "/files/"),
            Some((4, vec![("path".into(), "".into())]))
        );
        assert_eq!(hit(&r, Method::Get, "/files"), None);
        // A parameter never matches an empty segment; trailing slashes are significant.
        assert_eq!(hit(&r, Method::Get, "/users/"), None);
        assert_eq!(hit(&r, Method::Get, "/users/7/"), None);
        assert_eq!(hit(&r, Method::Get, "users"), None);
    }

    #[test]
    fn most_specific_route_wins_and_backtracks() {
        let r = router(&[
            (Method::Get, "/users/:id/edit"),
            (Method::Get, "/users/new"),
            (Method::Get, "/users/*rest"),
        ]);
        assert_eq!(hit(&r, Method::Get, "/users/new").map(|h| h.0), Some(1));
        // The static branch `new` has no `edit` child: backtrack to the parameter.
        assert_eq!(
            hit(&r, Method::Get, "/users/new/edit"),
            Some((0, vec![("id".into(), "new".into())]))
        );
        assert_eq!(
            hit(&r, Method::Get, "/users/new/other"),
            Some((2, vec![("rest".into(), "new/other".into())]))
        );
    }

    #[test]
    fn methods_405_and_head_falls_back_to_get() {
        let r = router(&[
            (Method::Get, "/a"),
            (Method::Post, "/a"),
            (Method::Put, "/b/:x"),
            (Method::Delete, "/b/c"),
        ]);
        assert_eq!(hit(&r, Method::Post, "/a").map(|h| h.0), Some(1));
        assert_eq!(hit(&r, Method::Head, "/a").map(|h| h.0), Some(0));
        assert_eq!(
            r.at(&Method::Patch, "/a").err(),
            Some(RouteMiss::MethodNotAllowed)
        );
        assert_eq!(RouteMiss::MethodNotAllowed.status(), 405);
        // `/b/c` has no PUT; the parameter route has.
        assert_eq!(hit(&r, Method::Put, "/b/c").map(|h| h.0), Some(2));
        assert_eq!(r.at(&Method::Get, "/zzz").err(), Some(RouteMiss::NotFound));
        assert_eq!(RouteMiss::NotFound.status(), 404);
        let other = Method::from_token(b"BREW");
        let mut r2: Router<u8> = Router::new();
        r2.insert(other.clone(), "/pot", 1).expect("valid");
        assert_eq!(r2.at(&other, "/pot").map(|m| *m.value), Ok(1));
    }

    #[test]
    fn query_is_ignored_and_requests_route() {
        let r = router(&[(Method::Get, "/q/:id")]);
        assert_eq!(
            hit(&r, Method::Get, "/q/5?x=/y"),
            Some((0, vec![("id".into(), "5".into())]))
        );
        let req = Request::new(Method::Get, "/q/9?z");
        let m = r.route(&req).expect("routed");
        assert_eq!(m.params.get("id"), Some("9"));
        assert_eq!(m.params.len(), 1);
        assert!(!m.params.is_empty());
        let bad = Request::new(Method::Get, &b"/q/\xff"[..]);
        assert_eq!(r.route(&bad).err(), Some(RouteMiss::NotFound));
    }

    #[test]
    fn different_names_at_one_position() {
        let r = router(&[(Method::Get, "/u/:id"), (Method::Get, "/u/:name/x")]);
        assert_eq!(
            hit(&r, Method::Get, "/u/1"),
            Some((0, vec![("id".into(), "1".into())]))
        );
        assert_eq!(
            hit(&r, Method::Get, "/u/bob/x"),
            Some((1, vec![("name".into(), "bob".into())]))
        );
    }

    #[test]
    fn bad_patterns_are_rejected() {
        let mut r: Router<()> = Router::new();
        let cases = [
            ("a", RouteError::NoLeadingSlash("a".into())),
            ("/:", RouteError::BadName("/:".into())),
            ("/*", RouteError::BadName("/*".into())),
            ("/:a-b", RouteError::BadName("/:a-b".into())),
            ("/*a/b", RouteError::WildcardNotLast("/*a/b".into())),
            ("/:a/:a", RouteError::DuplicateName("/:a/:a".into())),
            ("/x?y", RouteError::Query("/x?y".into())),
            (
                "/:a/:b/:c/:d/:e/:f/:g/:h/:i",
                RouteError::TooManyParams("/:a/:b/:c/:d/:e/:f/:g/:h/:i".into()),
            ),
        ];
        for (p, want) in cases {
            assert_eq!(r.insert(Method::Get, p, ()), Err(want), "{p}");
        }
        r.insert(Method::Get, "/:a/:b/:c/:d/:e/:f/:g/*h", ())
            .expect("eight captures are allowed");
        r.insert(Method::Get, "/x/:id", ()).expect("valid");
        assert!(matches!(
            r.insert(Method::Get, "/x/:other", ()),
            Err(RouteError::Conflict { .. })
        ));
        r.insert(Method::Post, "/x/:other", ())
            .expect("another method is no conflict");
        assert_eq!(r.len(), 3);
        let m = r.at(&Method::Get, "/1/2/3/4/5/6/7/8/9").expect("routed");
        assert_eq!(m.params.get("h"), Some("8/9"));
        assert_eq!(m.params.len(), 8);
    }

    // ---- proptest: the trie against a naive matcher over the same routes -----------------

    type Captures = Vec<(String, String)>;

    /// Per-segment rank: static 0, parameter 1, wildcard 2 (the wildcard ends the vector).
    fn naive_match(pattern: &str, path: &str) -> Option<(Vec<u8>, Captures)> {
        let path = path.split('?').next().unwrap_or("");
        let p_segs: Vec<&str> = pattern[1..].split('/').collect();
        let rest = path.strip_prefix('/')?;
        let mut rank = Vec::new();
        let mut caps = Vec::new();
        let mut remaining = Some(rest);
        for seg in &p_segs {
            if let Some(name) = seg.strip_prefix('*') {
                let r = remaining?;
                rank.push(2);
                caps.push((name.to_string(), r.to_string()));
                return Some((rank, caps));
            }
            let r = remaining?;
            let (s, next) = match r.find('/') {
                Some(i) => (&r[..i], Some(&r[i + 1..])),
                None => (r, None),
            };
            if let Some(name) = seg.strip_prefix(':') {
                if s.is_empty() {
                    return None;
                }
                rank.push(1);
                caps.push((name.to_string(), s.to_string()));
            } else if *seg == s {
                rank.push(0);
            } else {
                return None;
            }
            remaining = next;
        }
        remaining.is_none().then_some((rank, caps))
    }

    type Naive = Result<(usize, Captures), RouteMiss>;

    fn naive(routes: &[(Method, String)], m: &Method, path: &str) -> Naive {
        let matching: Vec<(usize, Vec<u8>, Captures)> = routes
            .iter()
            .enumerate()
            .filter_map(|(i, (_, p))| naive_match(p, path).map(|(r, c)| (i, r, c)))
            .collect();
        if matching.is_empty() {
            return Err(RouteMiss::NotFound);
        }
        let accepts = |i: usize, want: &Method| routes[i].0 == *want;
        let best = |want: &Method| {
            matching
                .iter()
                .filter(|(i, _, _)| accepts(*i, want))
                .min_by(|a, b| a.1.cmp(&b.1))
                .cloned()
        };
        // HEAD prefers an exact HEAD route of the same pattern shape, else its GET route; the
        // shape with the best rank that has either wins.
        let found = if *m == Method::Head {
            let shapes: Vec<_> = matching
                .iter()
                .filter(|(i, _, _)| accepts(*i, &Method::Head) || accepts(*i, &Method::Get))
                .map(|(_, r, _)| r.clone())
                .collect();
            shapes.iter().min().and_then(|top| {
                let at_top = |want: &Method| {
                    matching
                        .iter()
                        .find(|(i, r, _)| r == top && accepts(*i, want))
                        .cloned()
                };
                at_top(&Method::Head).or_else(|| at_top(&Method::Get))
            })
        } else {
            best(m)
        };
        match found {
            Some((i, _, caps)) => Ok((i, caps)),
            None => Err(RouteMiss::MethodNotAllowed),
        }
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(vec!["a", "b", "users", "x", ""]).prop_map(String::from),
            2 => prop::sample::select(vec![":id", ":name", ":p"]).prop_map(String::from),
        ]
    }

    fn pattern() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(segment(), 1..4),
            prop::option::weighted(0.3, prop::sample::select(vec!["*rest", "*tail"])),
        )
            .prop_map(|(segs, wild)| {
                let mut seen = Vec::new();
                let mut out = String::new();
                for (i, s) in segs.iter().enumerate() {
                    out.push('/');
                    if s.starts_with(':') {
                        // Unique names within a pattern.
                        let name = format!("{s}{i}");
                        seen.push(name.clone());
                        out.push_str(&name);
                    } else {
                        out.push_str(s);
                    }
                }
                if let Some(w) = wild {
                    out.push('/');
                    out.push_str(w);
                }
                out
            })
    }

    fn method() -> impl Strategy<Value = Method> {
        prop::sample::select(vec![Method::Get, Method::Head, Method::Post])
    }

    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec!["a", "b", "users", "x", "", "zz", "a/b"]),
            0..6,
        )
        .prop_map(|segs| format!("/{}", segs.join("/")))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn trie_agrees_with_naive_matcher(
            routes in prop::collection::vec((method(), pattern()), 0..12),
            lookups in prop::collection::vec((method(), path()), 1..16),
        ) {
            // Register what the router accepts; the naive side sees exactly those routes.
            let mut r = Router::new();
            let mut kept: Vec<(Method, String)> = Vec::new();
            for (m, p) in routes {
                if r.insert(m.clone(), &p, kept.len()).is_ok() {
                    kept.push((m, p));
                }
            }
            for (m, p) in lookups {
                let got: Naive = r
                    .at(&m, &p)
                    .map(|x| (*x.value, x.params.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()));
                prop_assert_eq!(got, naive(&kept, &m, &p), "{} {}", m, p);
            }
        }
    }
}
