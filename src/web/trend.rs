//! The trend page's charts: open deviations and run durations over the last 30 days, hour by
//! hour, drawn on the server as SVG by plotters and put in the page inline (no image files, no
//! script). Text and axes take the page's colour, so they read in light and dark themes.

use plotters::prelude::*;

/// One run, as the trend reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunPoint {
    /// Unix milliseconds.
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub deviations_open: i64,
}

/// Days shown.
pub const DAYS: i64 = 30;
const HOUR_MS: i64 = 3_600_000;
/// Drawn in this colour, then given the page's (`currentColor`): plotters knows only RGB.
const INK: RGBColor = RGBColor(1, 2, 3);
const INK_SVG: &str = "#010203";

/// Per hour of the window ending at `now`: the open deviations after the hour's last finished
/// run, and its slowest run in milliseconds. Hours without a finished run have none.
pub fn hourly(points: &[RunPoint], now: i64) -> Vec<(i64, Option<(i64, i64)>)> {
    let hours = (DAYS * 24) as usize;
    let start = now - DAYS * 24 * HOUR_MS;
    let mut out: Vec<(i64, Option<(i64, i64)>)> = (0..hours)
        .map(|h| (start + h as i64 * HOUR_MS, None))
        .collect();
    for p in points {
        let Some(finished) = p.finished_at else {
            continue;
        };
        if finished < start || finished > now {
            continue;
        }
        let h = (((finished - start) / HOUR_MS) as usize).min(hours - 1);
        let took = finished - p.started_at;
        let slot = &mut out[h].1;
        *slot = Some(match *slot {
            // Points come oldest first: the later run's count is the hour's.
            Some((_, slowest)) => (p.deviations_open, slowest.max(took)),
            None => (p.deviations_open, took),
        });
    }
    out
}

/// One chart: `series` (hour start, value) as lines broken where an hour has no run, over the
/// window ending at `now`, with `y_label` on the value axis.
pub fn chart(title: &str, y_label: &str, series: &[(i64, Option<f64>)], now: i64) -> String {
    let mut svg = String::new();
    let start = now - DAYS * 24 * HOUR_MS;
    let top = series
        .iter()
        .filter_map(|(_, v)| *v)
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.1;
    {
        let root = SVGBackend::with_string(&mut svg, (720, 240)).into_drawing_area();
        let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 16).into_font().color(&INK))
                .margin(8)
                .x_label_area_size(28)
                .y_label_area_size(56)
                .build_cartesian_2d(-(DAYS as f64)..0.0, 0.0..top)?;
            chart
                .configure_mesh()
                .x_desc("days ago")
                .y_desc(y_label)
                .x_labels(7)
                .y_labels(5)
                .x_label_formatter(&|d| format!("{:.0}", (-d).max(0.0)))
                .axis_style(INK)
                .label_style(("sans-serif", 12).into_font().color(&INK))
                .bold_line_style(INK.mix(0.15))
                .light_line_style(INK.mix(0.0))
                .draw()?;
            let day = |t: i64| (t - now) as f64 / (24 * HOUR_MS) as f64;
            let line = RGBColor(11, 92, 173).stroke_width(2);
            let mut run: Vec<(f64, f64)> = Vec::new();
            for (t, v) in series.iter().copied().chain([(start, None)]) {
                match v {
                    Some(v) => run.push((day(t), v)),
                    None if !run.is_empty() => {
                        if run.len() == 1 {
                            chart.draw_series(
                                run.iter().map(|p| Circle::new(*p, 2, line.filled())),
                            )?;
                        } else {
                            chart.draw_series(LineSeries::new(run.iter().copied(), line))?;
                        }
                        run.clear();
                    }
                    None => {}
                }
            }
            root.present()?;
            Ok(())
        })();
        if let Err(e) = drawn {
            tracing::warn!(error = %e, chart = title, "cannot draw a chart");
        }
    }
    svg.replace(INK_SVG, "currentColor")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_keep_the_last_count_and_the_slowest_run() {
        let now = 1_000 * HOUR_MS;
        let p = |start: i64, took: i64, open: i64| RunPoint {
            started_at: start,
            finished_at: Some(start + took),
            deviations_open: open,
        };
        let points = [
            p(now - 2 * HOUR_MS + 10, 500, 3),
            p(now - 2 * HOUR_MS + 1000, 2500, 5),
            p(now - 40 * 24 * HOUR_MS, 100, 9),
            RunPoint {
                started_at: now - 10,
                finished_at: None,
                deviations_open: 0,
            },
        ];
        let hours = hourly(&points, now);
        assert_eq!(hours.len(), 720);
        let filled: Vec<_> = hours.iter().filter_map(|(_, v)| *v).collect();
        assert_eq!(
            filled,
            vec![(5, 2500)],
            "older than 30 days and running are left out"
        );
        let series: Vec<(i64, Option<f64>)> = hours
            .iter()
            .map(|(t, v)| (*t, v.map(|(open, _)| open as f64)))
            .collect();
        let svg = chart("Open deviations", "open", &series, now);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("Open deviations"));
        assert!(svg.contains("currentColor") && !svg.contains(INK_SVG));
        assert!(svg.contains("<circle"), "a lone hour is a dot");
    }
}
