//! Charts drawn on the server as inline SVG: no script, no chart library, readable by a
//! screen reader (each chart is an image with a label, each bar says what it counts), and
//! coloured by the theme's CSS (`.chart` in `app.css`).

use maud::{Markup, html};

/// One bar: what it counts, and how many.
pub(crate) struct Bar {
    pub(crate) label: String,
    pub(crate) value: u64,
}

const WIDTH: u32 = 640;
const COLUMNS_HEIGHT: u32 = 180;
/// Room under the columns for their labels, and left of them for the scale.
const AXIS: u32 = 24;
const SCALE: u32 = 40;
const ROW_HEIGHT: u32 = 22;
/// Room left of the ranking's bars for their labels, and right for their values.
const NAMES: u32 = 180;
const VALUES: u32 = 60;

/// Vertical bars in the given order (time), every `label_every`th one labelled below.
pub(crate) fn columns(title: &str, bars: &[Bar], label_every: usize) -> Markup {
    let max = bars.iter().map(|bar| bar.value).max().unwrap_or(0).max(1);
    let plot = WIDTH - SCALE;
    let step = f64::from(plot) / bars.len().max(1) as f64;
    let top = f64::from(COLUMNS_HEIGHT - AXIS);
    html! {
        figure.chart {
            figcaption { (title) }
            svg role="img" aria-label=(title) viewBox={ "0 0 " (WIDTH) " " (COLUMNS_HEIGHT) } {
                text.scale x="0" y="12" { (max) }
                text.scale x="0" y=(top) { "0" }
                line.axis x1=(SCALE) y1=(top) x2=(WIDTH) y2=(top) {}
                @for (i, bar) in bars.iter().enumerate() {
                    @let height = top * bar.value as f64 / max as f64;
                    @let x = f64::from(SCALE) + step * i as f64;
                    rect.bar x=(round(x + step * 0.1)) y=(round(top - height))
                        width=(round(step * 0.8)) height=(round(height)) {
                        title { (bar.label) ": " (bar.value) }
                    }
                    @if label_every > 0 && i % label_every == 0 {
                        text.tick x=(round(x)) y=(COLUMNS_HEIGHT - 6) { (bar.label) }
                    }
                }
            }
        }
    }
}

/// Horizontal bars, largest first, each named on its left and counted on its right.
pub(crate) fn ranking(title: &str, bars: &[Bar]) -> Markup {
    let max = bars.iter().map(|bar| bar.value).max().unwrap_or(0).max(1);
    let height = ROW_HEIGHT * (bars.len() as u32).max(1);
    let room = f64::from(WIDTH - NAMES - VALUES);
    html! {
        figure.chart {
            figcaption { (title) }
            @if bars.is_empty() {
                p.muted { "Nothing counted in this period." }
            } @else {
                svg role="img" aria-label=(title) viewBox={ "0 0 " (WIDTH) " " (height) } {
                    @for (i, bar) in bars.iter().enumerate() {
                        @let y = ROW_HEIGHT * i as u32;
                        @let width = room * bar.value as f64 / max as f64;
                        text.name x="0" y=(y + 15) { (bar.label) }
                        rect.bar x=(NAMES) y=(y + 3) width=(round(width).max(1.0)) height=(ROW_HEIGHT - 6) {
                            title { (bar.label) ": " (bar.value) }
                        }
                        text.value x=(round(f64::from(NAMES) + width) + 6.0) y=(y + 15) { (bar.value) }
                    }
                }
            }
        }
    }
}

fn round(n: f64) -> f64 {
    (n * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(values: &[u64]) -> Vec<Bar> {
        values
            .iter()
            .enumerate()
            .map(|(i, &value)| Bar {
                label: format!("b{i}"),
                value,
            })
            .collect()
    }

    #[test]
    fn columns_scale_to_the_largest_bar_and_label_every_nth() {
        let svg = columns("Per day", &bars(&[0, 5, 10]), 2).into_string();
        assert_eq!(svg.matches("<rect").count(), 3);
        // The tallest bar fills the plot (180 - 24 = 156), the empty one has no height.
        assert!(
            svg.contains(r#"y="0" width="#) && svg.contains(r#"height="156""#),
            "{svg}"
        );
        assert!(svg.contains(r#"height="0""#), "{svg}");
        assert!(svg.contains("<title>b1: 5</title>"), "{svg}");
        assert_eq!(svg.matches(r#"class="tick""#).count(), 2, "b0 and b2");
        assert!(svg.contains(r#"aria-label="Per day""#));
    }

    #[test]
    fn a_ranking_says_so_when_empty_and_keeps_its_order() {
        assert!(
            ranking("Top", &[])
                .into_string()
                .contains("Nothing counted")
        );
        let svg = ranking("Top", &bars(&[9, 3])).into_string();
        let (first, second) = (svg.find(">b0<").unwrap(), svg.find(">b1<").unwrap());
        assert!(first < second, "{svg}");
    }
}
