//! The report as JSON, Markdown or one self-contained HTML page. Pure:
//! report data and `now` in, text out (no clock, no I/O, no external
//! resources in the page: inline CSS and inline SVG charts, no scripts).

use std::fmt::Write as _;

use jiff::Timestamp;

use crate::report::{GroupReport, Report};

/// The report as pretty-printed JSON.
pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("a report serialises")
}

/// `1.5 GiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `42 s`, `12 min`, `3.5 h`, `2.0 d`.
fn duration(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.1} s")
    } else if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else if seconds < 7200.0 {
        format!("{:.0} min", seconds / 60.0)
    } else if seconds < 172_800.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else {
        format!("{:.1} d", seconds / 86_400.0)
    }
}

fn ago(now: Timestamp, then: Timestamp) -> String {
    let seconds = now.duration_since(then).as_secs_f64();
    if seconds >= 0.0 {
        format!("{} ago", duration(seconds))
    } else {
        format!("in {}", duration(-seconds))
    }
}

fn day(time: Timestamp) -> String {
    time.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "pass",
        Some(false) => "FAIL",
        None => "n/a",
    }
}

fn group_name(group: &GroupReport) -> String {
    format!("{}:{}", group.hostname, group.paths.join(","))
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or("n/a".to_owned(), |r| format!("{:.0} %", r * 100.0))
}

fn drill_text(group: &GroupReport) -> String {
    match &group.last_drill {
        None => "none".to_owned(),
        Some(drill) => format!(
            "{} ({}{})",
            day(drill.time),
            drill.measured_seconds.map_or("?".to_owned(), duration),
            drill
                .rto_seconds
                .map_or(String::new(), |rto| format!(" / RTO {}", duration(rto)))
        ),
    }
}

fn retention_text(group: &GroupReport) -> String {
    match &group.retention {
        None => "n/a".to_owned(),
        Some(r) if r.conforms => format!("conforms ({} kept)", r.kept_by_policy),
        Some(r) => format!("{} snapshot(s) in excess", r.excess.len()),
    }
}

/// The report as Markdown.
pub fn markdown(report: &Report, now: Timestamp) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Arca recovery report\n");
    let _ = writeln!(
        out,
        "**{}** — repository `{}`, window {} → {}, generated {}\n",
        if report.compliant {
            "COMPLIANT"
        } else {
            "NOT COMPLIANT"
        },
        report.location,
        day(report.since),
        day(report.generated),
        ago(now, report.generated),
    );
    if let Some(class) = report.class {
        let _ = writeln!(
            out,
            "Data class **{class}**: RPO {}, RTO {}.\n",
            report.rpo_seconds.map_or("n/a".into(), duration),
            report.rto_seconds.map_or("n/a".into(), duration)
        );
    }
    let _ = writeln!(out, "## Applications\n");
    let _ = writeln!(
        out,
        "| Application | Backups | Success | Longest gap | Last backup | RPO | Last drill | Drill | Retention | Holds |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|---|---|---|---|---:|");
    for group in &report.groups {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            group_name(group),
            group.backups_in_window,
            percent(group.success_rate),
            group.longest_gap_seconds.map_or("n/a".into(), duration),
            group
                .last_backup
                .map_or("never".to_owned(), |t| ago(now, t)),
            verdict(group.rpo_met),
            drill_text(group),
            verdict(group.drill_ok),
            retention_text(group),
            group.holds,
        );
    }
    let _ = writeln!(out, "\n## Holds in force\n");
    if report.holds.is_empty() {
        let _ = writeln!(out, "None.");
    }
    for hold in &report.holds {
        let _ = writeln!(
            out,
            "- snapshot `{}` since {}{}: {}",
            hold.snapshot.short(),
            day(hold.placed),
            hold.until
                .map_or(String::new(), |until| format!(" until {}", day(until))),
            hold.reason
        );
    }
    let _ = writeln!(out, "\n## Keys and audit trail\n");
    let _ = writeln!(
        out,
        "- Data key in use since {} ({}); next rotation due {}{}",
        report.keys.in_use_since.map_or("unknown".into(), day),
        report
            .keys
            .age_days
            .map_or("age unknown".into(), |d| format!("{d:.0} days old")),
        report.keys.rotation_due.map_or("unknown".into(), day),
        if report.keys.rotation_overdue {
            " — **OVERDUE**"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "- Audit trail: {} records, {} ({} gaps, {} altered)",
        report.audit.records,
        match report.audit.intact {
            Some(true) => "intact",
            Some(false) => "**NOT intact**",
            None => "not verified",
        },
        report.audit.gaps,
        report.audit.damaged
    );
    let _ = writeln!(out, "\n## Size\n");
    let _ = writeln!(
        out,
        "- Repository: {} stored; snapshots added {} over {} backups",
        bytes(report.size.bytes),
        bytes(report.size.growth.last().map_or(0, |p| p.bytes)),
        report.size.growth.len()
    );
    out
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn badge(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => r#"<span class="badge ok">pass</span>"#,
        Some(false) => r#"<span class="badge bad">fail</span>"#,
        None => r#"<span class="badge na">n/a</span>"#,
    }
}

const CSS: &str = r#"
:root{--ink:#1d2433;--muted:#667085;--line:#e4e7ec;--bg:#f6f7f9;--ok:#12805c;--okbg:#e3f6ee;--bad:#b42318;--badbg:#fdecea;--accent:#3b5bdb}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:32px 28px 48px}
header{display:flex;justify-content:space-between;align-items:flex-start;gap:24px;margin-bottom:24px}
h1{font-size:26px;margin:0 0 4px;letter-spacing:-.01em}
h2{font-size:17px;margin:32px 0 12px}
.sub{color:var(--muted);font-size:13px}
.verdict{font-weight:700;font-size:15px;padding:10px 18px;border-radius:999px;white-space:nowrap}
.verdict.ok{background:var(--okbg);color:var(--ok)}.verdict.bad{background:var(--badbg);color:var(--bad)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px}
.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:14px 16px}
.card .label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.05em}
.card .value{font-size:22px;font-weight:650;margin-top:2px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:12px}
.chart{background:#fff;border:1px solid var(--line);border-radius:10px;padding:14px 16px}
.chart h3{font-size:13px;margin:0 0 8px;color:var(--muted);font-weight:600}
svg text{font:11px system-ui,sans-serif;fill:var(--muted)}
table{width:100%;border-collapse:collapse;background:#fff;border:1px solid var(--line);border-radius:10px;overflow:hidden}
th,td{text-align:left;padding:9px 12px;border-bottom:1px solid var(--line);font-size:13.5px;vertical-align:top}
th{background:#fafbfc;color:var(--muted);font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
tr:last-child td{border-bottom:none}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,monospace}
.badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;font-weight:600}
.badge.ok{background:var(--okbg);color:var(--ok)}.badge.bad{background:var(--badbg);color:var(--bad)}.badge.na{background:#eef0f3;color:var(--muted)}
.empty{color:var(--muted);font-style:italic}
footer{margin-top:36px;color:var(--muted);font-size:12px}
"#;

/// Chart area size in SVG units.
const CHART_W: f64 = 520.0;
const CHART_H: f64 = 180.0;
const PAD_L: f64 = 58.0;
const PAD_B: f64 = 22.0;

fn empty_chart(message: &str) -> String {
    format!(
        r#"<svg viewBox="0 0 {CHART_W} {CHART_H}" width="100%" role="img"><text x="{}" y="{}" text-anchor="middle">{}</text></svg>"#,
        CHART_W / 2.0,
        CHART_H / 2.0,
        escape(message)
    )
}

/// A line chart of `(time, value)` with a y axis labelled by `label`.
fn line_chart(points: &[(Timestamp, f64)], label: impl Fn(f64) -> String) -> String {
    if points.is_empty() {
        return empty_chart("no data in the window");
    }
    let t0 = points[0].0.as_second() as f64;
    let t1 = points[points.len() - 1].0.as_second() as f64;
    let span = (t1 - t0).max(1.0);
    let max = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0);
    let (w, h) = (CHART_W - PAD_L - 8.0, CHART_H - PAD_B - 8.0);
    let x = |t: f64| PAD_L + (t - t0) / span * w;
    let y = |v: f64| 8.0 + h - v / max * h;
    let mut path = String::new();
    for (n, (time, value)) in points.iter().enumerate() {
        let _ = write!(
            path,
            "{}{:.1},{:.1} ",
            if n == 0 { "M" } else { "L" },
            x(time.as_second() as f64),
            y(*value)
        );
    }
    let area = format!(
        "{path}L{:.1},{:.1} L{:.1},{:.1} Z",
        x(t1),
        y(0.0),
        x(t0),
        y(0.0)
    );
    let mut svg = format!(r#"<svg viewBox="0 0 {CHART_W} {CHART_H}" width="100%" role="img">"#);
    for step in 0..=2 {
        let v = max * f64::from(step) / 2.0;
        let _ = write!(
            svg,
            r##"<line x1="{PAD_L}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e4e7ec"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            CHART_W - 8.0,
            PAD_L - 6.0,
            y(v) + 4.0,
            escape(&label(v)),
            y = y(v)
        );
    }
    let _ = write!(
        svg,
        r##"<path d="{area}" fill="#3b5bdb" fill-opacity="0.12"/><path d="{path}" fill="none" stroke="#3b5bdb" stroke-width="2"/>"##
    );
    for (time, value) in points {
        let _ = write!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="#3b5bdb"/>"##,
            x(time.as_second() as f64),
            y(*value)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{PAD_L}" y="{}">{}</text><text x="{}" y="{}" text-anchor="end">{}</text></svg>"#,
        CHART_H - 4.0,
        points[0].0.strftime("%Y-%m-%d"),
        CHART_W - 8.0,
        CHART_H - 4.0,
        points[points.len() - 1].0.strftime("%Y-%m-%d")
    );
    svg
}

/// Horizontal bars: `(label, value)`, with an optional limit line; bars
/// beyond the limit are red.
fn bar_chart(bars: &[(String, f64)], limit: Option<f64>, label: impl Fn(f64) -> String) -> String {
    if bars.is_empty() {
        return empty_chart("no data in the window");
    }
    let row = 22.0;
    let height = bars.len() as f64 * row + PAD_B + 8.0;
    let label_w = 150.0;
    let w = CHART_W - label_w - 70.0;
    let max = bars
        .iter()
        .map(|b| b.1)
        .chain(limit)
        .fold(0.0, f64::max)
        .max(1.0);
    let mut svg = format!(r#"<svg viewBox="0 0 {CHART_W} {height}" width="100%" role="img">"#);
    for (n, (name, value)) in bars.iter().enumerate() {
        let top = 6.0 + n as f64 * row;
        let over = limit.is_some_and(|limit| *value > limit);
        let short: String = name.chars().take(22).collect();
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{label_w}" y="{top:.1}" width="{:.1}" height="{:.1}" rx="3" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"##,
            label_w - 6.0,
            top + 13.0,
            escape(&short),
            (value / max * w).max(1.0),
            row - 7.0,
            if over { "#d92d20" } else { "#3b5bdb" },
            label_w + (value / max * w).max(1.0) + 5.0,
            top + 13.0,
            escape(&label(*value))
        );
    }
    if let Some(limit) = limit {
        let lx = label_w + limit / max * w;
        let bottom = 6.0 + bars.len() as f64 * row;
        let _ = write!(
            svg,
            r##"<line x1="{lx:.1}" x2="{lx:.1}" y1="2" y2="{bottom:.1}" stroke="#b42318" stroke-dasharray="4 3"/><text x="{lx:.1}" y="{:.1}" text-anchor="middle">limit {}</text>"##,
            bottom + 14.0,
            escape(&label(limit))
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The report as one self-contained HTML page.
pub fn html(report: &Report, now: Timestamp) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>Arca recovery report</title><style>{CSS}</style></head><body><main>"#
    );
    let _ = write!(
        out,
        r#"<header id="summary"><div><h1>Arca recovery report</h1><div class="sub">Repository <code>{}</code> · window {} → {} · generated {}{}</div></div><div class="verdict {}">{}</div></header>"#,
        escape(&report.location),
        day(report.since),
        day(report.generated),
        ago(now, report.generated),
        report.class.map_or(String::new(), |class| format!(
            " · class <b>{class}</b> (RPO {}, RTO {})",
            report.rpo_seconds.map_or("n/a".into(), duration),
            report.rto_seconds.map_or("n/a".into(), duration)
        )),
        if report.compliant { "ok" } else { "bad" },
        if report.compliant {
            "✓ Compliant"
        } else {
            "✗ Not compliant"
        },
    );

    let backups: u64 = report.groups.iter().map(|g| g.backups_in_window).sum();
    let failures: u64 = report.groups.iter().map(|g| g.failures_recorded).sum();
    let rate = (backups + failures > 0).then(|| backups as f64 / (backups + failures) as f64);
    let cards = [
        ("Applications", report.groups.len().to_string()),
        ("Backups in window", backups.to_string()),
        ("Success rate", percent(rate)),
        ("Repository size", bytes(report.size.bytes)),
        (
            "Data key age",
            report
                .keys
                .age_days
                .map_or("unknown".into(), |d| format!("{d:.0} days")),
        ),
        ("Holds in force", report.holds.len().to_string()),
    ];
    out.push_str(r#"<section class="cards">"#);
    for (label, value) in cards {
        let _ = write!(
            out,
            r#"<div class="card"><div class="label">{label}</div><div class="value">{}</div></div>"#,
            escape(&value)
        );
    }
    out.push_str("</section>");

    let growth: Vec<(Timestamp, f64)> = report
        .size
        .growth
        .iter()
        .map(|p| (p.time, p.bytes as f64))
        .collect();
    let mut durations: Vec<(Timestamp, f64)> = report
        .groups
        .iter()
        .flat_map(|g| g.backups.iter())
        .filter_map(|b| b.duration_seconds.map(|d| (b.time, d)))
        .collect();
    durations.sort_by_key(|d| d.0);
    let gaps: Vec<(String, f64)> = report
        .groups
        .iter()
        .filter_map(|g| g.longest_gap_seconds.map(|gap| (group_name(g), gap)))
        .collect();
    let _ = write!(
        out,
        r#"<h2 id="charts">Trends</h2><section class="charts"><div class="chart" id="chart-growth"><h3>Repository growth (stored bytes added by kept snapshots)</h3>{}</div><div class="chart" id="chart-durations"><h3>Backup durations</h3>{}</div><div class="chart" id="chart-gaps"><h3>Longest gap between backups, per application</h3>{}</div></section>"#,
        line_chart(&growth, |v| bytes(v as u64)),
        line_chart(&durations, duration),
        bar_chart(&gaps, report.rpo_seconds, duration),
    );

    out.push_str(r#"<h2 id="applications">Applications</h2><table><thead><tr><th>Application</th><th>Backups</th><th>Success</th><th>Longest gap</th><th>Last backup</th><th>RPO</th><th>Last drill</th><th>Drill / RTO</th><th>Retention</th><th>Holds</th></tr></thead><tbody>"#);
    if report.groups.is_empty() {
        out.push_str(r#"<tr><td colspan="10" class="empty">No snapshots.</td></tr>"#);
    }
    for group in &report.groups {
        let retention_ok = group.retention.as_ref().map(|r| r.conforms);
        let _ = write!(
            out,
            r#"<tr><td><b>{}</b><br><code>{}</code></td><td class="num">{} <span class="sub">/ {}</span></td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} <span class="sub">{}</span></td><td class="num">{}</td></tr>"#,
            escape(&group.hostname),
            escape(&group.paths.join(", ")),
            group.backups_in_window,
            group.snapshots_total,
            percent(group.success_rate),
            group.longest_gap_seconds.map_or("n/a".into(), duration),
            group
                .last_backup
                .map_or("never".to_owned(), |t| ago(now, t)),
            badge(group.rpo_met),
            escape(&drill_text(group)),
            badge(group.drill_ok),
            badge(retention_ok),
            escape(&retention_text(group)),
            group.holds,
        );
    }
    out.push_str("</tbody></table>");

    out.push_str(r#"<h2 id="holds">Holds in force</h2><table><thead><tr><th>Snapshot</th><th>Reason</th><th>Placed</th><th>Until</th></tr></thead><tbody>"#);
    if report.holds.is_empty() {
        out.push_str(r#"<tr><td colspan="4" class="empty">None.</td></tr>"#);
    }
    for hold in &report.holds {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            hold.snapshot.short(),
            escape(&hold.reason),
            day(hold.placed),
            hold.until.map_or("released by hand".to_owned(), day)
        );
    }
    out.push_str("</tbody></table>");

    let _ = write!(
        out,
        r#"<h2 id="integrity">Keys and audit trail</h2><table><tbody><tr><th>Data key in use since</th><td>{}</td><td>{}</td></tr><tr><th>Next rotation due</th><td>{}</td><td>{}</td></tr><tr><th>Audit trail</th><td>{} records · {} gaps · {} altered</td><td>{}</td></tr></tbody></table>"#,
        report.keys.in_use_since.map_or("unknown".into(), day),
        report
            .keys
            .age_days
            .map_or(String::new(), |d| format!("{d:.0} days")),
        report.keys.rotation_due.map_or("unknown".into(), day),
        badge(
            report
                .keys
                .rotation_due
                .map(|_| !report.keys.rotation_overdue)
        ),
        report.audit.records,
        report.audit.gaps,
        report.audit.damaged,
        badge(report.audit.intact),
    );
    let _ = write!(
        out,
        "<footer>Generated by Arca {}. Figures come from the repository's snapshots, audit trail, holds and key files.</footer></main></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{
        AuditStatus, BackupPoint, GrowthPoint, HoldView, KeyStatus, RetentionStatus, SizeStatus,
    };
    use arca_repo::Id;

    fn time(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn sample(compliant: bool) -> Report {
        Report {
            location: "s3:bucket/<app>".into(),
            generated: time("2026-03-31T12:00:00Z"),
            since: time("2026-03-01T00:00:00Z"),
            class: Some(arca_sched::DataClass::Critical),
            rpo_seconds: Some(3600.0),
            rto_seconds: Some(900.0),
            groups: vec![GroupReport {
                hostname: "db".into(),
                paths: vec!["/data".into()],
                backups_in_window: 2,
                snapshots_total: 3,
                failures_recorded: 1,
                success_rate: Some(2.0 / 3.0),
                last_backup: Some(time("2026-03-31T11:00:00Z")),
                longest_gap_seconds: Some(7200.0),
                since_last_seconds: Some(3600.0),
                rpo_met: Some(compliant),
                backups: vec![BackupPoint {
                    snapshot: Id([1; 32]),
                    time: time("2026-03-31T11:00:00Z"),
                    duration_seconds: Some(12.0),
                    bytes_added: Some(1 << 20),
                    gap_seconds: Some(7200.0),
                }],
                last_drill: None,
                drill_ok: None,
                retention: Some(RetentionStatus {
                    existing: 3,
                    kept_by_policy: 3,
                    held: 0,
                    excess: Vec::new(),
                    conforms: true,
                }),
                holds: 1,
            }],
            holds: vec![HoldView {
                snapshot: Id([1; 32]),
                reason: "case <42> & co".into(),
                placed: time("2026-03-02T00:00:00Z"),
                until: None,
            }],
            keys: KeyStatus {
                in_use_since: Some(time("2026-01-01T00:00:00Z")),
                age_days: Some(89.5),
                rotation_due: Some(time("2026-04-01T00:00:00Z")),
                rotation_overdue: false,
            },
            audit: AuditStatus {
                records: 9,
                intact: Some(true),
                gaps: 0,
                damaged: 0,
            },
            size: SizeStatus {
                bytes: 3 << 30,
                growth: vec![
                    GrowthPoint {
                        time: time("2026-03-01T00:00:00Z"),
                        bytes: 1 << 30,
                    },
                    GrowthPoint {
                        time: time("2026-03-31T11:00:00Z"),
                        bytes: 2 << 30,
                    },
                ],
            },
            compliant,
        }
    }

    #[test]
    fn html_is_self_contained_escaped_and_has_every_section() {
        let page = html(&sample(true), time("2026-03-31T13:00:00Z"));
        for id in [
            "id=\"summary\"",
            "id=\"charts\"",
            "id=\"chart-growth\"",
            "id=\"chart-durations\"",
            "id=\"chart-gaps\"",
            "id=\"applications\"",
            "id=\"holds\"",
            "id=\"integrity\"",
        ] {
            assert!(page.contains(id), "missing {id}");
        }
        assert!(page.contains("✓ Compliant"));
        assert!(page.contains("case &lt;42&gt; &amp; co"));
        assert!(!page.contains("case <42>"));
        assert!(page.contains("generated 1.0 h ago") || page.contains("generated 60 min ago"));
        for external in ["<script", "http://", "https://", "<link", "@import", "url("] {
            assert!(!page.contains(external), "page references {external}");
        }
        // The RPO gap over the limit is drawn red.
        assert!(page.contains("#d92d20"));
    }

    #[test]
    fn a_failing_report_says_so_everywhere() {
        let report = sample(false);
        let now = time("2026-03-31T13:00:00Z");
        assert!(html(&report, now).contains("✗ Not compliant"));
        let text = markdown(&report, now);
        assert!(text.starts_with("# Arca recovery report"));
        assert!(text.contains("**NOT COMPLIANT**"));
        assert!(
            text.contains("| `db:/data` | 2 | 67 % | 2.0 h | 2.0 h ago | FAIL |"),
            "{text}"
        );
        assert!(text.contains("case <42> & co"));
    }

    #[test]
    fn json_round_trips() {
        let report = sample(true);
        let back: Report = serde_json::from_str(&json(&report)).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn units_read_naturally() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(duration(42.0), "42 s");
        assert_eq!(duration(0.3), "0.3 s");
        assert_eq!(duration(900.0), "15 min");
        assert_eq!(duration(7200.0), "2.0 h");
        assert_eq!(duration(3.0 * 86_400.0), "3.0 d");
    }
}
