//! `--plot`: latency over time as a small standalone SVG (p50 and p99 per one-second
//! bucket of the measured window), written by hand.
//!
//! Rationale: two polylines, two axes and a legend are a few dozen lines of text; a
//! plotting crate would cost more compile time than the whole tool.

use std::fmt::Write as _;

use crate::report::TimelinePoint;

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 400.0;
/// Room for the axis labels on the left and bottom, the title on top.
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_RIGHT: f64 = 20.0;
const MARGIN_TOP: f64 = 40.0;
const MARGIN_BOTTOM: f64 = 50.0;
/// Gridlines on the y axis.
const Y_TICKS: u32 = 5;
const P50_COLOR: &str = "#1f77b4";
const P99_COLOR: &str = "#d62728";

/// The SVG document for `points`, titled `title`.
pub fn svg(title: &str, points: &[TimelinePoint]) -> String {
    let plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let x_max = points.iter().map(|p| p.second).max().unwrap_or(0).max(1) as f64;
    let y_max = nice_ceiling(points.iter().map(|p| p.p99_ms.max(p.p50_ms)).fold(0.0, f64::max));
    let x = |second: u64| MARGIN_LEFT + second as f64 / x_max * plot_w;
    let y = |ms: f64| MARGIN_TOP + plot_h - ms / y_max * plot_h;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="14">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    for tick in 0..=Y_TICKS {
        let ms = y_max * f64::from(tick) / f64::from(Y_TICKS);
        let ty = y(ms);
        let _ = writeln!(
            out,
            r##"<line x1="{MARGIN_LEFT}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            MARGIN_LEFT + plot_w,
            MARGIN_LEFT - 6.0,
            ty + 4.0,
            trim_number(ms)
        );
    }
    let x_step = (x_max / 10.0).ceil().max(1.0) as u64;
    for second in (0..=x_max as u64).step_by(x_step as usize) {
        let tx = x(second);
        let _ = writeln!(
            out,
            r#"<text x="{tx:.1}" y="{:.1}" text-anchor="middle">{second}</text>"#,
            MARGIN_TOP + plot_h + 18.0
        );
    }
    let _ = writeln!(
        out,
        r#"<line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP}" x2="{MARGIN_LEFT}" y2="{:.1}" stroke="black"/><line x1="{MARGIN_LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>"#,
        MARGIN_TOP + plot_h,
        MARGIN_TOP + plot_h,
        MARGIN_LEFT + plot_w,
        MARGIN_TOP + plot_h
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">second of the measured window</text>"#,
        MARGIN_LEFT + plot_w / 2.0,
        HEIGHT - 10.0
    );
    let _ = writeln!(
        out,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">latency (ms)</text>"#,
        MARGIN_TOP + plot_h / 2.0,
        MARGIN_TOP + plot_h / 2.0
    );
    for (label, color, pick) in [
        ("p50", P50_COLOR, (|p: &TimelinePoint| p.p50_ms) as fn(&TimelinePoint) -> f64),
        ("p99", P99_COLOR, |p| p.p99_ms),
    ] {
        let coordinates: Vec<String> = points.iter().map(|p| format!("{:.1},{:.1}", x(p.second), y(pick(p)))).collect();
        let _ = writeln!(
            out,
            r#"<polyline class="{label}" fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            coordinates.join(" ")
        );
    }
    let legend_x = MARGIN_LEFT + plot_w - 90.0;
    for (i, (label, color)) in [("p50", P50_COLOR), ("p99", P99_COLOR)].iter().enumerate() {
        let ly = MARGIN_TOP + 14.0 + 16.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{legend_x:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{label}</text>"#,
            legend_x + 24.0,
            legend_x + 30.0,
            ly + 4.0
        );
    }
    out.push_str("</svg>\n");
    out
}

/// The smallest 1, 2 or 5 × 10^k at or above `value` (at least 0.001 ms), so the axis
/// reads in round numbers.
pub fn nice_ceiling(value: f64) -> f64 {
    let value = if value.is_finite() { value.max(0.001) } else { 0.001 };
    let magnitude = 10f64.powf(value.log10().floor());
    for factor in [1.0, 2.0, 5.0, 10.0] {
        let candidate = factor * magnitude;
        if candidate >= value * (1.0 - 1e-9) {
            return candidate;
        }
    }
    10.0 * magnitude
}

fn trim_number(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(second: u64, p50_ms: f64, p99_ms: f64) -> TimelinePoint {
        TimelinePoint { second, requests: 10, p50_ms, p99_ms }
    }

    #[test]
    fn axis_tops_are_round_numbers() {
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(1.2), 2.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(42.0), 50.0);
        assert!((nice_ceiling(0.0) - 0.001).abs() < 1e-12);
        assert!((nice_ceiling(0.0013) - 0.002).abs() < 1e-12);
    }

    #[test]
    fn the_svg_has_both_lines_inside_the_plot() {
        let points = [point(0, 1.0, 4.0), point(1, 1.5, 9.0), point(2, 1.2, 3.0)];
        let doc = svg("direct <post>", &points);
        assert!(doc.starts_with("<svg") && doc.trim_end().ends_with("</svg>"));
        assert!(doc.contains("direct &lt;post&gt;"));
        assert_eq!(doc.matches("<polyline").count(), 2);
        let p99 = doc.lines().find(|l| l.contains(r#"class="p99""#)).expect("p99 line");
        assert_eq!(p99.matches(',').count(), 3, "one vertex per point: {p99}");
        // The highest p99 (9 ms, axis top 10 ms) sits 10% below the top of the plot.
        let top = MARGIN_TOP + (HEIGHT - MARGIN_TOP - MARGIN_BOTTOM) * 0.1;
        assert!(p99.contains(&format!(",{top:.1}")), "{p99}");
    }

    #[test]
    fn an_empty_timeline_still_makes_a_document() {
        let doc = svg("nothing", &[]);
        assert!(doc.contains("</svg>"));
        assert!(!doc.contains("NaN") && !doc.contains("inf"));
    }
}
