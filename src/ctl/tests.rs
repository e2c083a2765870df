//! `ctl`'s command line and its tables. The binary's own `Cli` (flattening Pingora's `Opt`)
//! is tested in `src/main.rs`; here a wrapper parses `wsgate ctl ...` the same way.

use super::args::*;
use super::views::{self, Table};
use clap::Parser;
use serde_json::json;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "wsgate")]
enum Wsgate {
    Ctl(CtlArgs),
}

fn parse(args: &str) -> Result<CtlArgs, clap::Error> {
    Wsgate::try_parse_from(args.split_whitespace()).map(|Wsgate::Ctl(a)| a)
}

#[test]
fn connection_options_may_come_before_or_after_the_action() {
    for line in ["wsgate ctl -c /tmp/w.yaml --json upstreams", "wsgate ctl upstreams -c /tmp/w.yaml --json"] {
        let args = parse(line).unwrap();
        assert_eq!(args.connection.config, Some("/tmp/w.yaml".into()), "{line}");
        assert!(args.connection.json, "{line}");
        assert_eq!(args.action, Action::Upstreams);
    }
    let args = parse("wsgate ctl --admin http://127.0.0.1:9102 --token-file t sessions").unwrap();
    assert_eq!(args.connection.admin.as_deref(), Some("http://127.0.0.1:9102"));
    assert_eq!(args.connection.token_file, Some("t".into()));
    assert!(!args.connection.json);
}

#[test]
fn a_config_and_an_admin_url_exclude_each_other() {
    let e = parse("wsgate ctl -c w.yaml --admin http://127.0.0.1:9102 upstreams").unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
}

#[test]
fn sessions_filters_are_optional() {
    let args = parse("wsgate ctl sessions --upstream app --backend [::1]:80 --limit 5").unwrap();
    let expected = Action::Sessions {
        upstream: Some("app".into()),
        backend: Some("[::1]:80".into()),
        route: None,
        limit: Some(5),
    };
    assert_eq!(args.action, expected);
    assert!(parse("wsgate ctl sessions --limit many").is_err());
}

#[test]
fn drain_takes_a_pool_an_address_a_window_and_a_bounded_wait() {
    let args = parse("wsgate ctl drain app 127.0.0.1:9001 --window 30s --wait --timeout 10m").unwrap();
    let window = Some(Window { text: "30s".into(), duration: Duration::from_secs(30) });
    let expected = Action::Drain {
        pool: "app".into(),
        addr: "127.0.0.1:9001".into(),
        window,
        wait: true,
        timeout: Some(Duration::from_secs(600)),
    };
    assert_eq!(args.action, expected);
    for bad in [
        "wsgate ctl drain app",                           // no address
        "wsgate ctl drain app a:1 --window 30",           // a bare number: seconds or milliseconds?
        "wsgate ctl drain app a:1 b:2",                   // one backend at a time
        "wsgate ctl drain app a:1 --timeout 1m",          // --timeout without --wait means nothing
        "wsgate ctl drain app a:1 --wait --timeout soon", // not a duration
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn enable_and_close_take_their_operands() {
    assert_eq!(
        parse("wsgate ctl enable app [::1]:80").unwrap().action,
        Action::Enable { pool: "app".into(), addr: "[::1]:80".into() }
    );
    let args = parse("wsgate ctl close 17 --code 1008 --reason bye").unwrap();
    assert_eq!(args.action, Action::Close { id: 17, code: Some(1008), reason: Some("bye".into()) });
    assert!(parse("wsgate ctl close seventeen").is_err());
    assert!(parse("wsgate ctl close 17 --code 70000").is_err(), "a close code is 16 bits");
    assert!(parse("wsgate ctl").is_err(), "an action is required");
}

#[test]
fn a_table_aligns_text_left_and_numbers_right() {
    let mut table = Table::new(&["NAME", "N"]);
    table.row(["app".to_string(), "3".to_string()]);
    table.row(["chat-long".to_string(), "120".to_string()]);
    assert_eq!(table.render(), "NAME         N\napp          3\nchat-long  120\n");
}

#[test]
fn addresses_are_text_and_a_dash_does_not_decide_a_columns_alignment() {
    let mut table = Table::new(&["ADDRESS", "SUBPROTOCOL", "N"]);
    table.row(["127.0.0.1".to_string(), "-".to_string(), "-".to_string()]);
    table.row(["10.0.0.1".to_string(), "-".to_string(), "12".to_string()]);
    let expected = "ADDRESS    SUBPROTOCOL   N\n127.0.0.1  -             -\n10.0.0.1   -            12\n";
    assert_eq!(table.render(), expected);
}

#[test]
fn upstreams_show_one_row_per_backend_and_a_missing_field_as_a_dash() {
    let answer = json!({"upstreams": [{"name": "app", "backends": [
        {"address": "127.0.0.1:9001", "weight": 1, "healthy": true, "in_rotation": true, "draining": false, "sessions": 3, "requests": 0},
        {"address": "[::1]:9002", "weight": 2, "healthy": false, "in_rotation": false, "sessions": 12, "requests": 1}
    ]}]});
    let out = views::upstreams(&answer);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>()[..2], ["UPSTREAM", "BACKEND"]);
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["app", "127.0.0.1:9001", "1", "yes", "yes", "no", "3", "0"]
    );
    assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["app", "[::1]:9002", "2", "no", "no", "-", "12", "1"]);
    // Right-aligned numbers end in the same column as their header.
    let end_of = |line: &str, cell: &str| line.rfind(cell).map(|i| i + cell.len());
    assert_eq!(end_of(lines[0], "SESSIONS"), end_of(lines[2], "12"));
    assert_eq!(end_of(lines[1], " 3"), end_of(lines[2], "12"));
}

#[test]
fn sessions_show_ages_for_people_and_say_when_the_list_was_cut() {
    let answer = json!({"total": 5, "sessions": [
        {"id": 17, "client": "127.0.0.1", "route": "ws", "upstream": "app", "backend": "127.0.0.1:9001",
         "subprotocol": null, "age_secs": 185.2, "idle_secs": 1.0, "bytes_in": 10, "bytes_out": 20,
         "messages_in": 1, "messages_out": 2}
    ]});
    let out = views::sessions(&answer);
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row, ["17", "127.0.0.1", "ws", "app", "127.0.0.1:9001", "-", "3m05s", "1.0s", "10", "20", "1", "2"]);
    assert!(out.contains("1 of 5 sessions shown"), "{out}");
    let all = views::sessions(&json!({"total": 0, "sessions": []}));
    assert_eq!(all.lines().count(), 1, "only the header, no footer: {all}");
}

#[test]
fn ages_read_as_people_count_time() {
    for (secs, expected) in [(0.04, "0.0s"), (59.9, "59.9s"), (60.0, "1m00s"), (7380.0, "2h03m"), (100_800.0, "1d04h")]
    {
        assert_eq!(views::age(&json!(secs)), expected, "{secs}");
    }
    assert_eq!(views::age(&json!(null)), "-");
}

#[test]
fn confirmations_name_what_was_done() {
    assert_eq!(
        views::enabled(&json!({"upstream": "app", "backend": "127.0.0.1:9001", "draining": false})),
        "app 127.0.0.1:9001: back in rotation\n"
    );
    assert_eq!(views::closed(&json!({"id": 17, "code": 1008})), "session 17 closed with code 1008\n");
}
