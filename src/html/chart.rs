//! Line charts as inline SVG, drawn by plotters' SVG backend: no script, no font file, nothing
//! fetched, so the page opens from disk, a mail attachment or a CI artifact.

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// Line colours, picked from the Okabe-Ito and Tol palettes, which colour-blind readers tell
/// apart; each has at least 3:1 contrast on white (WCAG's figure for graphics), tested below.
pub const PALETTE: [RGBColor; 4] = [
    RGBColor(0x00, 0x72, 0xB2),
    RGBColor(0xD5, 0x5E, 0x00),
    RGBColor(0x00, 0x7A, 0x5E),
    RGBColor(0x88, 0x22, 0x55),
];

/// A named line: its points in runs, broken where nothing was measured (a second in which no
/// message was timed): a line across the hole would show values never seen. A run of one
/// point is drawn as a dot.
pub struct Line {
    pub name: String,
    pub runs: Vec<Vec<(f64, f64)>>,
}

impl Line {
    /// An unbroken line.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Line {
        Line {
            name: name.into(),
            runs: vec![points],
        }
    }

    /// A line broken at each `None`.
    pub fn broken(
        name: impl Into<String>,
        points: impl IntoIterator<Item = Option<(f64, f64)>>,
    ) -> Line {
        let mut runs = vec![Vec::new()];
        for p in points {
            match (p, runs.last_mut()) {
                (Some(p), Some(run)) => run.push(p),
                (None, Some(run)) if run.is_empty() => {}
                (None, _) => runs.push(Vec::new()),
                (Some(_), None) => unreachable!("runs starts with one"),
            }
        }
        runs.retain(|r| !r.is_empty());
        Line {
            name: name.into(),
            runs,
        }
    }

    fn points(&self) -> impl Iterator<Item = &(f64, f64)> {
        self.runs.iter().flatten()
    }
}

pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub lines: Vec<Line>,
    /// The x axis is 1 / (1 − percentile / 100), logarithmic, labelled in percentiles.
    pub spectrum: bool,
}

const WIDTH: u32 = 860;
const HEIGHT: u32 = 300;

impl Chart<'_> {
    /// The chart as an `<svg>` element, or a sentence when there is nothing to draw.
    pub fn svg(&self) -> String {
        let all = || self.lines.iter().flat_map(Line::points);
        if all().next().is_none() {
            return format!(
                "<p class=\"none\">{}: nothing was measured.</p>",
                self.title
            );
        }
        let (x0, x1) = bounds(all().map(|p| p.0));
        let (_, y1) = bounds(all().map(|p| p.1));
        let mut out = String::new();
        let drawn = match self.spectrum {
            true => self.draw_spectrum(&mut out, x1, y1),
            false => self.draw_linear(&mut out, (x0, x1), y1),
        };
        match drawn {
            Ok(()) => out,
            Err(e) => format!(
                "<p class=\"none\">{}: could not be drawn ({e}).</p>",
                self.title
            ),
        }
    }

    fn draw_linear(&self, out: &mut String, (x0, x1): (f64, f64), y1: f64) -> Result<(), String> {
        self.draw(out, x0..x1.max(x0 + 1.0), y1, None)
    }

    fn draw_spectrum(&self, out: &mut String, x1: f64, y1: f64) -> Result<(), String> {
        let label = |x: &f64| percentile_label(*x);
        self.draw(out, (1.0..x1.max(10.0)).log_scale(), y1, Some(&label))
    }

    /// The chart over `x`, its labels by `x_label` or plotters' own.
    fn draw<X>(
        &self,
        out: &mut String,
        x: X,
        y1: f64,
        x_label: Option<&dyn Fn(&f64) -> String>,
    ) -> Result<(), String>
    where
        X: AsRangedCoord<Value = f64>,
        X::CoordDescType: ValueFormatter<f64>,
    {
        let root = SVGBackend::with_string(out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(self.title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(x, 0.0..(y1 * 1.05).max(1.0))
            .map_err(|e| e.to_string())?;
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(self.x_label).y_desc(self.y_label);
        if let Some(label) = x_label {
            mesh.x_label_formatter(label);
        }
        mesh.draw().map_err(|e| e.to_string())?;
        self.series(&mut chart)?;
        root.present().map_err(|e| e.to_string())
    }

    fn series<'a, DB: DrawingBackend + 'a, X: Ranged<ValueType = f64>>(
        &self,
        chart: &mut ChartContext<'a, DB, Cartesian2d<X, RangedCoordf64>>,
    ) -> Result<(), String> {
        for (i, line) in self.lines.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let runs = &line.runs;
            for run in runs.iter().filter(|r| r.len() == 1) {
                chart
                    .draw_series(run.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                    .map_err(|e| e.to_string())?;
            }
            let mut drawn = None;
            for run in runs.iter().filter(|r| r.len() > 1) {
                let series = LineSeries::new(run.iter().copied(), colour.stroke_width(2));
                drawn = Some(chart.draw_series(series).map_err(|e| e.to_string())?);
            }
            let Some(drawn) = drawn else { continue };
            drawn.label(line.name.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
            });
        }
        if self.lines.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// The spectrum's x for a percentile: 1 / (1 − p/100), capped at six nines.
pub fn spectrum_x(percentile: f64) -> f64 {
    1.0 / (1.0 - (percentile / 100.0).min(0.999_999))
}

fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    match p {
        p if p < 99.0 => format!("{p:.0}%"),
        p if p < 99.99 => format!("{p:.1}%"),
        p => format!("{p:.3}%"),
    }
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn luminance(c: RGBColor) -> f64 {
        let lin = |v: u8| {
            let s = f64::from(v) / 255.0;
            if s <= 0.039_28 {
                s / 12.92
            } else {
                ((s + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * lin(c.0) + 0.7152 * lin(c.1) + 0.0722 * lin(c.2)
    }

    #[test]
    fn every_line_colour_stands_out_on_white() {
        for c in PALETTE {
            let contrast = 1.05 / (luminance(c) + 0.05);
            assert!(contrast >= 3.0, "{c:?}: {contrast:.2}:1");
        }
    }

    #[test]
    fn a_line_breaks_where_nothing_was_measured() {
        let p = |x: f64| Some((x, x));
        let line = Line::broken("p99", [None, p(1.0), p(2.0), None, None, p(5.0), None]);
        let runs: Vec<usize> = line.runs.iter().map(Vec::len).collect();
        assert_eq!(runs, [2, 1]);
        assert!(Line::broken("none", [None, None]).runs.is_empty());
    }

    #[test]
    fn the_spectrum_axis_reads_in_percentiles() {
        assert_eq!(percentile_label(spectrum_x(90.0)), "90%");
        assert_eq!(percentile_label(spectrum_x(99.9)), "99.9%");
        assert_eq!(percentile_label(spectrum_x(99.999)), "99.999%");
        assert!(spectrum_x(100.0).is_finite());
    }

    #[test]
    fn a_chart_is_an_svg_element_and_nothing_else() {
        let chart = Chart {
            title: "open",
            x_label: "s",
            y_label: "connections",
            lines: vec![Line::new(
                "open",
                vec![(0.0, 0.0), (1.0, 10.0), (2.0, 20.0)],
            )],
            spectrum: false,
        };
        let svg = chart.svg();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{svg}"
        );
        assert!(!svg.contains("<script") && !svg.contains("href"), "{svg}");
        let empty = Chart {
            lines: vec![],
            ..chart
        };
        assert!(empty.svg().contains("nothing was measured"));
    }
}
