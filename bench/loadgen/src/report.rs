//! `loadgen report`: medians of run.sh's raw results as Markdown tables, each figure with
//! its ratio to the tuned nginx (`nginx`) at the same worker count and, for wsgate, also to
//! HAProxy (`haproxy`) at the same worker count.
//!
//! Input lines: `rotation<TAB>proxy<TAB>workers<TAB>metric<TAB>value`; `#` lines are skipped.

use std::collections::BTreeMap;
use std::path::Path;

/// (metric key, column header, decimals)
const TABLE_1: &[(&str, &str, usize)] = &[
    ("http_rps", "HTTP req/s", 0),
    ("http_p99_us", "HTTP p99 µs", 0),
    ("http_cpu_us", "CPU µs / HTTP req", 1),
    ("echo_mps", "WS echoes/s", 0),
    ("echo_p50_us", "WS echo p50 µs", 0),
    ("echo_p99_us", "WS echo p99 µs", 0),
    ("echo_cpu_us", "CPU µs / WS echo", 1),
];
const TABLE_2: &[(&str, &str, usize)] = &[
    ("hs_per_s", "WS handshakes/s", 0),
    ("hs_cpu_us", "CPU µs / handshake", 0),
    ("bulk_mib_s", "1 GiB echo MiB/s", 0),
    ("idle_rss_kib", "RSS KiB / idle WS session", 1),
    ("idle_burst_rss_kib", "… after 256 KiB each way", 1),
];
const TABLE_3: &[(&str, &str, usize)] = &[
    ("flood_base_p99_us", "paced WS p99 µs, unloaded", 0),
    ("flood_p99_us", "paced WS p99 µs, under flood", 0),
    ("flood_ratio", "p99 under flood / unloaded", 2),
    ("flood_conn_s", "flood connections/s", 0),
    ("flood_cpu_us", "CPU µs / flooded connection", 1),
];
/// Counted, not medianed: (metric, header).
const COUNTS: &[(&str, &str)] = &[
    ("http_errors", "HTTP errors"),
    ("echo_errors", "echo errors"),
    ("hs_failures", "handshake failures"),
    ("bulk_stalled", "bulk stalls"),
    ("idle_failed", "idle sessions failed"),
    ("flood_errors", "paced echo errors (flood)"),
];

type Key = (String, u32); // (proxy, workers)

pub fn run(input: &Path) -> i32 {
    let text = match std::fs::read_to_string(input) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("report: cannot read {}: {e}", input.display());
            return 1;
        }
    };
    let mut values: BTreeMap<(Key, String), Vec<f64>> = BTreeMap::new();
    let mut rotations = std::collections::BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 5 {
            continue;
        }
        let (Ok(workers), Ok(value)) = (f[2].parse::<u32>(), f[4].parse::<f64>()) else { continue };
        rotations.insert(f[0].to_string());
        values.entry(((f[1].to_string(), workers), f[3].to_string())).or_default().push(value);
    }
    let mut rows: Vec<Key> = Vec::new();
    for (key, _) in values.keys() {
        if !rows.contains(key) {
            rows.push(key.clone());
        }
    }
    rows.sort_by_key(row_order);

    let median = |key: &Key, metric: &str| -> Option<f64> {
        let mut v = values.get(&(key.clone(), metric.to_string()))?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
    };
    let label = |k: &Key| if k.0 == "direct" { "direct (no proxy)".to_string() } else { format!("{} ×{}", k.0, k.1) };
    let same_workers = |proxy: &str, k: &Key| -> Key { (proxy.to_string(), k.1) };

    println!(
        "Medians of {} interleaved rotation(s). (N x ng) = ratio to the tuned nginx (`nginx`: upstream keepalive) \
         with the same worker count; wsgate's rows also give (N x hp) = ratio to HAProxy with the same worker count. \
         `nginx-seed` is nginx with the seed's recipe (a backend connection per HTTP request).\n",
        rotations.len()
    );
    for table in [TABLE_1, TABLE_2, TABLE_3] {
        if !rows.iter().any(|row| table.iter().any(|(metric, _, _)| median(row, metric).is_some())) {
            continue; // a workload left out of this run
        }
        let mut header = String::from("| |");
        let mut rule = String::from("|---|");
        for (_, h, _) in table {
            header += &format!(" {h} |");
            rule += "---|";
        }
        if table.iter().any(|c| c.0 == "bulk_mib_s") {
            header += " 1 GiB echo vs direct |";
            rule += "---|";
        }
        println!("{header}\n{rule}");
        for row in &rows {
            let mut line = format!("| {} |", label(row));
            for (metric, _, decimals) in table {
                let cell = match median(row, metric) {
                    None => "—".to_string(),
                    Some(v) => {
                        let refs: Vec<(&str, Option<f64>)> = references(&row.0)
                            .iter()
                            .map(|(proxy, tag)| (*tag, median(&same_workers(proxy, row), metric)))
                            .collect();
                        cell(v, *decimals, &refs)
                    }
                };
                line += &format!(" {cell} |");
            }
            if table.iter().any(|c| c.0 == "bulk_mib_s") {
                let direct = median(&("direct".to_string(), 1), "bulk_mib_s");
                let cell = match (median(row, "bulk_mib_s"), direct) {
                    (Some(v), Some(d)) if d > 0.0 => format!("{:.2}x", v / d),
                    _ => "—".to_string(),
                };
                line += &format!(" {cell} |");
            }
            println!("{line}");
        }
        println!();
    }
    // Failures: totals over all runs, so a single stall or error is never hidden by a median.
    let mut header = String::from("| failures (sum over runs) |");
    let mut rule = String::from("|---|");
    for (_, h) in COUNTS {
        header += &format!(" {h} |");
        rule += "---|";
    }
    println!("{header}\n{rule}");
    for row in &rows {
        let mut line = format!("| {} |", label(row));
        for (metric, _) in COUNTS {
            let cell = match values.get(&(row.clone(), metric.to_string())) {
                None => "—".to_string(),
                Some(v) => format!("{} in {} run(s)", v.iter().sum::<f64>(), v.len()),
            };
            line += &format!(" {cell} |");
        }
        println!("{line}");
    }
    0
}

/// Row order within a worker count: no proxy, the references, then wsgate, then anything else.
fn row_order(k: &Key) -> (u32, u8, String) {
    let rank = match k.0.as_str() {
        "direct" => 0,
        "nginx" => 1,
        "nginx-seed" => 2,
        "haproxy" => 3,
        "wsgate" => 4,
        _ => 5,
    };
    (k.1, rank, k.0.clone())
}

/// The proxies a row's figures are divided by, with the tag shown after the ratio: every row
/// but the tuned nginx's against the tuned nginx; wsgate's also against HAProxy.
fn references(proxy: &str) -> &'static [(&'static str, &'static str)] {
    match proxy {
        "nginx" => &[],
        "wsgate" => &[("nginx", "ng"), ("haproxy", "hp")],
        _ => &[("nginx", "ng")],
    }
}

/// `v` with its ratios to the references that were measured (and are not zero), e.g.
/// `36.5 (1.78x ng, 2.10x hp)`; just `v` when there are none.
fn cell(v: f64, decimals: usize, refs: &[(&str, Option<f64>)]) -> String {
    let ratios: Vec<String> = refs
        .iter()
        .filter_map(|(tag, base)| match base {
            Some(b) if *b > 0.0 => Some(format!("{:.2}x {tag}", v / b)),
            _ => None,
        })
        .collect();
    if ratios.is_empty() {
        format!("{v:.decimals$}")
    } else {
        format!("{v:.decimals$} ({})", ratios.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_shows_each_measured_reference() {
        assert_eq!(cell(36.5, 1, &[("ng", Some(20.5)), ("hp", Some(17.38))]), "36.5 (1.78x ng, 2.10x hp)");
        assert_eq!(cell(36.5, 1, &[("ng", Some(20.5)), ("hp", None)]), "36.5 (1.78x ng)");
        assert_eq!(cell(36.5, 1, &[("ng", Some(0.0)), ("hp", None)]), "36.5");
        assert_eq!(cell(1234.4, 0, &[]), "1234");
    }

    #[test]
    fn wsgate_against_both_references_the_others_against_tuned_nginx() {
        assert!(references("nginx").is_empty());
        assert_eq!(references("wsgate"), &[("nginx", "ng"), ("haproxy", "hp")]);
        assert_eq!(references("nginx-seed"), &[("nginx", "ng")]);
        assert_eq!(references("haproxy"), &[("nginx", "ng")]);
    }

    #[test]
    fn rows_by_workers_then_proxy() {
        let mut rows: Vec<Key> = ["wsgate", "haproxy", "nginx-seed", "nginx", "direct"]
            .iter()
            .flat_map(|p| [(p.to_string(), 2), (p.to_string(), 1)])
            .collect();
        rows.sort_by_key(row_order);
        let names: Vec<String> = rows.iter().map(|(p, w)| format!("{p}:{w}")).collect();
        assert_eq!(
            names.join(" "),
            "direct:1 nginx:1 nginx-seed:1 haproxy:1 wsgate:1 direct:2 nginx:2 nginx-seed:2 haproxy:2 wsgate:2"
        );
    }
}
