//! The SVG chart of a report, written by hand (no plotting dependency): per-stage p50 and p99
//! on a logarithmic scale, and throughput per second over the run.

use crate::report::Report;

const WIDTH: f64 = 960.0;
const ROW: f64 = 22.0;
const LABEL: f64 = 430.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Returns the chart as an SVG document; `subtitle` says what ran where.
pub(crate) fn svg(report: &Report, subtitle: &str) -> String {
    let rows: Vec<_> = report
        .stages
        .iter()
        .chain(std::iter::once(&report.end_to_end))
        .filter(|latency| !latency.histogram.is_empty())
        .collect();
    let bars_top = 70.0;
    let bars_height = rows.len() as f64 * ROW;
    let lines_top = bars_top + bars_height + 70.0;
    let lines_height = 220.0;
    let height = lines_top + lines_height + 60.0;
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="15" font-weight="bold">caller load test: {}</text>
<text x="10" y="38" fill="#555">{}</text>
<text x="10" y="{}" font-weight="bold">Latency per stage (ms, log scale): p50 dark, p99 light</text>
"##,
        escape(&report.scenario),
        escape(subtitle),
        bars_top - 12.0
    );
    // Log scale from 0.1 ms to the largest p99, in decades.
    let max_ms = rows
        .iter()
        .map(|latency| latency.percentile_ms(99.0))
        .fold(1.0, f64::max);
    let decades = (max_ms.log10().ceil() + 1.0).max(1.0);
    let plot = WIDTH - LABEL - 20.0;
    let x_of =
        |value: f64| LABEL + plot * ((value.max(0.1).log10() + 1.0) / decades).clamp(0.0, 1.0);
    for decade in 0..=(decades as i32) {
        let value = 10f64.powi(decade - 1);
        let x = x_of(value);
        out.push_str(&format!(
            r##"<line x1="{x:.1}" y1="{bars_top}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>
"##,
            bars_top + bars_height,
            bars_top + bars_height + 14.0,
            if value < 1.0 { format!("{value}") } else { format!("{value:.0}") }
        ));
    }
    for (index, latency) in rows.iter().enumerate() {
        let y = bars_top + index as f64 * ROW;
        let p50 = latency.percentile_ms(50.0);
        let p99 = latency.percentile_ms(99.0);
        out.push_str(&format!(
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>
<rect x="{LABEL}" y="{:.1}" width="{:.1}" height="14" fill="#9ecae1"/>
<rect x="{LABEL}" y="{:.1}" width="{:.1}" height="14" fill="#3182bd"/>
<text x="{:.1}" y="{:.1}" fill="#333">{p50:.1} / {p99:.1}</text>
"##,
            LABEL - 6.0,
            y + 11.0,
            escape(&latency.name),
            y,
            (x_of(p99) - LABEL).max(1.0),
            y,
            (x_of(p50) - LABEL).max(1.0),
            x_of(p99) + 4.0,
            y + 11.0,
        ));
    }

    // Throughput per second.
    out.push_str(&format!(
        r#"<text x="10" y="{}" font-weight="bold">Per second over the run: requests accepted (green), call.requested (orange), create-calls at the simulator (purple)</text>
"#,
        lines_top - 12.0
    ));
    let seconds = report.timeline.len().max(2);
    let peak = report
        .timeline
        .iter()
        .flat_map(|row| row.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let left = 60.0;
    let plot_width = WIDTH - left - 20.0;
    let x_at = |second: usize| left + plot_width * second as f64 / (seconds - 1) as f64;
    let y_at = |value: f64| lines_top + lines_height - lines_height * value / peak;
    for step in 0..=4 {
        let value = peak * f64::from(step) / 4.0;
        let y = y_at(value);
        out.push_str(&format!(
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{value:.0}</text>
"##,
            WIDTH - 20.0,
            left - 4.0,
            y + 4.0
        ));
    }
    let tick = (seconds / 10).max(1);
    for second in (0..seconds).step_by(tick) {
        out.push_str(&format!(
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555">{second}s</text>
"##,
            x_at(second),
            lines_top + lines_height + 14.0
        ));
    }
    for (column, colour) in [(0, "#31a354"), (1, "#e6550d"), (2, "#756bb1")] {
        let points: Vec<String> = report
            .timeline
            .iter()
            .enumerate()
            .map(|(second, row)| format!("{:.1},{:.1}", x_at(second), y_at(row[column] as f64)))
            .collect();
        out.push_str(&format!(
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>
"#,
            points.join(" ")
        ));
    }
    out.push_str("</svg>\n");
    out
}
