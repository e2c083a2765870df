//! The whole import on files in memory: exit codes, the report's shape, stable output,
//! paths seen from where the YAML goes.

use super::include::Memory;
use super::{import, ImportArgs, Outcome};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn args(file: &str, output: Option<&str>) -> ImportArgs {
    ImportArgs { file: PathBuf::from(file), output: output.map(PathBuf::from), prefix: None }
}

fn run(files: &[(&'static str, &'static str)], file: &str, output: Option<&str>) -> Outcome {
    import(&args(file, output), &Memory(BTreeMap::from_iter(files.iter().copied())))
}

const RECIPE: &str = "upstream chat { server 127.0.0.1:3001; }\n\
    server { listen 8080; location /ws { proxy_pass http://chat; proxy_set_header Host $host; } }\n";

#[test]
fn exit_codes() {
    let ok = run(&[("n.conf", RECIPE)], "n.conf", None);
    assert_eq!((ok.code, ok.yaml.is_some()), (0, true), "{:?}", ok.report);

    let broken = run(&[("n.conf", "server {\n listen 80;\n \"unterminated;\n}\n")], "n.conf", None);
    assert_eq!((broken.code, broken.yaml), (2, None));
    assert_eq!(broken.report[0], "n.conf:3: error: unexpected end of file inside the string quoted with \" on this line; expected the closing \"");

    let nothing = run(&[("n.conf", "server { listen 80; root /srv; }")], "n.conf", None);
    assert_eq!((nothing.code, nothing.yaml), (1, None));

    let absent = run(&[], "n.conf", None);
    assert_eq!(absent.code, 2);
    assert!(absent.report[0].starts_with("n.conf: error: cannot read it"), "{:?}", absent.report);
}

#[test]
fn a_translation_that_fails_wsgates_check_here_is_written_with_exit_1() {
    let tls = "server { listen 443 ssl; ssl_certificate /nonexistent/c.pem; ssl_certificate_key /nonexistent/c.key;\n\
               location / { proxy_pass http://127.0.0.1:1; } }";
    let out = run(&[("n.conf", tls)], "n.conf", None);
    assert_eq!((out.code, out.yaml.is_some()), (1, true));
    let check =
        out.report.iter().find(|l| l.contains("fails wsgate's own check")).expect("the check's error is reported");
    assert!(check.starts_with("n.conf: error: the translation fails wsgate's own check here: <stdout>:"), "{check}");
}

#[test]
fn the_same_input_gives_the_same_bytes() {
    let a = run(&[("n.conf", RECIPE)], "n.conf", None);
    let b = run(&[("n.conf", RECIPE)], "n.conf", None);
    assert_eq!(a, b);
    assert_eq!(
        a.report.last().unwrap(),
        "wsgate import-nginx: n.conf: 0 errors, 0 likely mistakes, 0 warnings, 0 notes; wsgate config written to <stdout>"
    );
}

#[test]
fn a_relative_certificate_is_written_as_seen_from_the_output() {
    let conf = "server { listen 443 ssl; ssl_certificate ssl/c.pem; ssl_certificate_key ssl/c.key;\n\
                location / { proxy_pass http://127.0.0.1:1; } }";
    let out = run(&[("etc/nginx/n.conf", conf)], "etc/nginx/n.conf", Some("out/w.yaml"));
    let yaml = out.yaml.unwrap();
    assert!(yaml.contains("      cert: ../etc/nginx/ssl/c.pem\n      key: ../etc/nginx/ssl/c.key\n"), "{yaml}");
    assert!(
        out.report.iter().any(|l| l.starts_with("etc/nginx/n.conf:1: info: ssl_certificate: a relative path")),
        "{:?}",
        out.report
    );
}
