//! An admin request as the endpoints read it: the method, the path's segments and the
//! query's parameters, percent-decoded.

use super::reply::Reply;
use percent_encoding::percent_decode_str;
use pingora::http::RequestHeader;

pub(super) struct Request {
    pub(super) method: String,
    pub(super) segments: Vec<String>,
    query: Vec<(String, String)>,
}

fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

impl Request {
    pub(super) fn new(req: &RequestHeader) -> Request {
        let segments = req.uri.path().split('/').filter(|s| !s.is_empty()).map(decode).collect();
        let query = req
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(&k.replace('+', " ")), decode(&v.replace('+', " ")))
            })
            .collect();
        Request { method: req.method.as_str().to_string(), segments, query }
    }

    /// The parameter `name`, if given and not empty.
    pub(super) fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    /// The parameter `name` parsed with `parse`; a bad value is the 400 that names it.
    pub(super) fn parsed<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, Reply> {
        match self.param(name) {
            None => Ok(None),
            Some(text) => parse(text).map(Some).map_err(|e| Reply::error(400, &format!("`{name}`: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_parameters_are_percent_decoded() {
        let req =
            RequestHeader::build("POST", b"/upstreams/app/backends/%5B::1%5D:9001/drain?window=5s&x=&r=a+b%21", None)
                .unwrap();
        let r = Request::new(&req);
        assert_eq!(r.segments, ["upstreams", "app", "backends", "[::1]:9001", "drain"]);
        assert_eq!(
            (r.param("window"), r.param("x"), r.param("r"), r.param("none")),
            (Some("5s"), None, Some("a b!"), None)
        );
        let bad = r.parsed("window", |_| Err::<u8, _>("no".into())).err().unwrap();
        assert_eq!((bad.status, bad.body["error"].as_str()), (400, Some("`window`: no")));
    }
}
