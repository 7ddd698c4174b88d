//! The HTML report of a run ([`report`]) and of two runs overlaid ([`compare`]): one
//! self-contained file, plots drawn by `plotters` into inline SVG, no script, no font or style
//! fetched from anywhere (its Content-Security-Policy forbids it). Every text that comes from
//! the run (phase names, marks, options) is escaped.
//!
//! The plots are of the summary only ([`RunSummary`]: quantiles and histograms of bounded size),
//! so a report of a million nodes is as small as one of a hundred.

use std::error::Error;
use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::compare::{Headline, Table};
use crate::summary::{Distribution, Latency, PhaseSummary, RunSummary, Timeline};

type Plot = Result<String, Box<dyn Error>>;

const W: u32 = 760;
const H: u32 = 340;
const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(230, 110, 0);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const RED: RGBColor = RGBColor(214, 39, 40);
const FONT: &str = "sans-serif";

/// Escapes `s` for HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn svg(draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), Box<dyn Error>>) -> Plot {
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (W, H)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    // Inline SVG in HTML needs no namespace; without it the page names no address at all.
    Ok(s.replace(" xmlns=\"http://www.w3.org/2000/svg\"", ""))
}

/// A plot, or a line saying why it could not be drawn (never a panic, never a missing section).
fn figure(plot: Plot, caption: &str) -> String {
    match plot {
        Ok(s) => format!(
            "<figure>{s}<figcaption>{}</figcaption></figure>\n",
            escape(caption)
        ),
        Err(e) => format!(
            "<p class=\"err\">plot not drawn: {}</p>\n",
            escape(&e.to_string())
        ),
    }
}

/// A series of points with its legend and style.
struct Line<'a> {
    label: String,
    points: &'a [[f64; 2]],
    color: RGBColor,
    dashed: bool,
}

fn upper(v: f64) -> f64 {
    if v > 0.0 { v * 1.05 } else { 1.0 }
}

/// CDFs of latency: x in ms up to the largest 99.9th percentile (the tables give the maxima).
fn cdf_plot(title: &str, lines: &[Line<'_>], rtt_ms: f64) -> Plot {
    let xmax = upper(
        lines
            .iter()
            .filter_map(|l| l.points.iter().rev().nth(2).map(|p| p[0]))
            .fold(0.0, f64::max),
    );
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..xmax, 0f64..1f64)?;
        chart
            .configure_mesh()
            .x_desc(format!("latency, ms (RTT {rtt_ms:.0} ms)"))
            .x_label_formatter(&|x| number(*x, xmax))
            .y_desc("share of operations")
            .y_label_formatter(&|y| format!("{:.0} %", y * 100.0))
            .draw()?;
        for l in lines {
            // A CDF is a step function: flat until the next quantile's latency, then up.
            let mut pts: Vec<(f64, f64)> = Vec::with_capacity(2 * l.points.len());
            for p in l.points.iter().filter(|p| p[0] <= xmax) {
                if let Some(&(_, q)) = pts.last() {
                    pts.push((p[0], q));
                }
                pts.push((p[0], p[1]));
            }
            let style = l.color.stroke_width(2);
            let color = l.color;
            let anno = if l.dashed {
                chart.draw_series(DashedLineSeries::new(pts, 6, 4, style))?
            } else {
                chart.draw_series(LineSeries::new(pts, style))?
            };
            anno.label(l.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// Bars of equal bins: `(lower bound, width, count)`.
fn bar_plot(title: &str, x_desc: &str, y_desc: &str, bars: &[(f64, f64, u64)], color: RGBColor) -> Plot {
    let x0 = bars.first().map_or(0.0, |b| b.0);
    let x1 = bars.last().map_or(1.0, |b| b.0 + b.1).max(x0 + 1e-9);
    let ymax = upper(bars.iter().map(|b| b.2).max().unwrap_or(0) as f64);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, 0f64..ymax)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|x| number(*x, x1 - x0))
            .y_label_formatter(&|y| number(*y, ymax))
            .draw()?;
        chart.draw_series(bars.iter().map(|&(lo, w, c)| {
            Rectangle::new([(lo + w * 0.05, 0.0), (lo + w * 0.95, c as f64)], color.filled())
        }))?;
        Ok(())
    })
}

/// A curve of an overlay: legend, points, colour, dashed.
type Curve = (String, Vec<(f64, f64)>, RGBColor, bool);

/// Lines of points `(x, y)` on free axes, for overlays.
fn line_plot(title: &str, x_desc: &str, y_desc: &str, lines: &[Curve]) -> Plot {
    let all = lines.iter().flat_map(|l| l.1.iter());
    let xmax = upper(all.clone().map(|p| p.0).fold(0.0, f64::max));
    let xmin = all.clone().map(|p| p.0).fold(f64::INFINITY, f64::min).min(0.0);
    let ymax = upper(all.map(|p| p.1).fold(0.0, f64::max));
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(xmin..xmax, 0f64..ymax)?;
        chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw()?;
        for (label, pts, color, dashed) in lines {
            let style = color.stroke_width(2);
            let c = *color;
            let anno = if *dashed {
                chart.draw_series(DashedLineSeries::new(pts.iter().copied(), 6, 4, style))?
            } else {
                chart.draw_series(LineSeries::new(pts.iter().copied(), style))?
            };
            anno.label(label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// Success (left axis, %) and median latency (right axis, ms) over virtual time, marks as
/// vertical lines with their labels.
fn timeline_plot(title: &str, runs: &[(&str, &Timeline, bool)]) -> Plot {
    let t0 = |t: &Timeline| t.bins.first().map_or(0.0, |b| b.start_secs);
    let xmax = upper(
        runs.iter()
            .map(|(_, t, _)| t.bins.len() as f64 * t.bin_secs)
            .fold(0.0, f64::max),
    );
    let lmax = upper(
        runs.iter()
            .flat_map(|(_, t, _)| t.bins.iter().filter_map(|b| b.first_value_p50_ms))
            .fold(0.0, f64::max),
    );
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .right_y_label_area_size(60)
            .build_cartesian_2d(0f64..xmax, 0f64..105f64)?
            .set_secondary_coord(0f64..xmax, 0f64..lmax);
        chart
            .configure_mesh()
            .x_desc("virtual seconds from the first operation")
            .y_desc("gets found, %")
            .draw()?;
        chart
            .configure_secondary_axes()
            .y_desc("get first value p50, ms")
            .draw()?;
        for (name, t, dashed) in runs {
            let start = t0(t);
            let mid = |b: &crate::summary::TimeBin| b.start_secs - start + t.bin_secs / 2.0;
            let ok: Vec<(f64, f64)> = t
                .bins
                .iter()
                .filter(|b| b.gets.started > 0)
                .map(|b| (mid(b), 100.0 * b.gets.rate()))
                .collect();
            let lat: Vec<(f64, f64)> = t
                .bins
                .iter()
                .filter_map(|b| b.first_value_p50_ms.map(|l| (mid(b), l)))
                .collect();
            let sfx = if name.is_empty() {
                String::new()
            } else {
                format!(" ({name})")
            };
            let (g, o) = (GREEN.stroke_width(2), ORANGE.stroke_width(2));
            if *dashed {
                chart.draw_series(DashedLineSeries::new(ok, 6, 4, g))?
            } else {
                chart.draw_series(LineSeries::new(ok, g))?
            }
            .label(format!("gets found{sfx}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], GREEN.stroke_width(2)));
            if *dashed {
                chart.draw_secondary_series(DashedLineSeries::new(lat, 6, 4, o))?
            } else {
                chart.draw_secondary_series(LineSeries::new(lat, o))?
            }
            .label(format!("first value p50{sfx}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], ORANGE.stroke_width(2)));
            let puts: Vec<(f64, f64)> = t
                .bins
                .iter()
                .filter(|b| b.puts.started > 0)
                .map(|b| (mid(b), 100.0 * b.puts.rate()))
                .collect();
            if !puts.is_empty() {
                let bl = BLUE.stroke_width(2);
                if *dashed {
                    chart.draw_series(DashedLineSeries::new(puts, 6, 4, bl))?
                } else {
                    chart.draw_series(LineSeries::new(puts, bl))?
                }
                .label(format!("puts acknowledged{sfx}"))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
            }
            for (k, (from, to, label, count)) in spans(t).into_iter().take(40).enumerate() {
                let (x0, x1) = ((from - start).max(0.0), (to - start).min(xmax));
                if x0 > xmax || x1 < 0.0 {
                    continue;
                }
                if x1 > x0 {
                    chart.draw_series(std::iter::once(Rectangle::new(
                        [(x0, 0.0), (x1, 105.0)],
                        RED.mix(0.12).filled(),
                    )))?;
                } else {
                    chart.draw_series(std::iter::once(PathElement::new(
                        vec![(x0, 0.0), (x0, 105.0)],
                        RED.mix(0.6).stroke_width(1),
                    )))?;
                }
                let label = if count > 1 {
                    format!("{label} ×{count}")
                } else {
                    label
                };
                chart.draw_series(std::iter::once(Text::new(
                    label,
                    (x0, 100.0 - 6.0 * (k % 4) as f64),
                    (FONT, 11).into_font().color(&RED),
                )))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// An axis label: whole numbers on wide axes.
fn number(x: f64, range: f64) -> String {
    if range >= 10.0 || (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// The timeline's fault marks as spans: marks of one label less than two bins apart are one
/// span `(from, to, label, count)` (steady churn is one band, not a hundred lines).
fn spans(t: &Timeline) -> Vec<(f64, f64, String, u64)> {
    let mut out: Vec<(f64, f64, String, u64)> = Vec::new();
    for m in t.marks.iter().filter(|m| !m.label.starts_with("phase ")) {
        if let Some(last) = out.iter_mut().rev().find(|s| s.2 == m.label)
            && m.at_secs - last.1 <= 2.0 * t.bin_secs.max(1.0)
        {
            last.1 = m.at_secs;
            last.3 += u64::from(m.count);
            continue;
        }
        out.push((m.at_secs, m.at_secs, m.label.clone(), u64::from(m.count)));
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;max-width:900px;margin:1em auto;padding:0 1em;color:#222}\
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;margin-top:2em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}figure{margin:1em 0}figcaption{font-size:.9em;color:#555}\
.warn{background:#fee;border:1px solid #c66;padding:.5em}.err{color:#a00}.better{color:#070}.worse{color:#a00}\
p.how{font-size:.9em;color:#444}";

fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        escape(title),
        escape(title)
    )
}

fn row(out: &mut String, cells: &[String]) {
    out.push_str("<tr>");
    for c in cells {
        let _ = write!(out, "<td>{}</td>", escape(c));
    }
    out.push_str("</tr>\n");
}

fn latency_rows(out: &mut String, name: &str, l: &Latency) {
    if l.count == 0 {
        return;
    }
    row(
        out,
        &[
            name.into(),
            l.count.to_string(),
            format!("{:.1} ({:.2} RTT)", l.p50_ms, l.p50_rtt),
            format!("{:.1} ({:.2} RTT)", l.p90_ms, l.p90_rtt),
            format!("{:.1} ({:.2} RTT)", l.p99_ms, l.p99_rtt),
            format!("{:.1}", l.max_ms),
        ],
    );
}

fn phase_lines<'a>(p: &'a PhaseSummary, tag: &str, dashed: bool) -> Vec<Line<'a>> {
    [
        ("get first value", &p.get_first_value, BLUE),
        ("get done", &p.get_done, GREEN),
        ("put done", &p.put_done, ORANGE),
    ]
    .into_iter()
    .filter(|(_, l, _)| l.count > 0)
    .map(|(n, l, color)| Line {
        label: format!("{tag}{n}"),
        points: &l.cdf,
        color,
        dashed,
    })
    .collect()
}

fn hop_bars(h: &[u64]) -> Vec<(f64, f64, u64)> {
    h.iter()
        .enumerate()
        .map(|(i, c)| (i as f64 - 0.5, 1.0, *c))
        .collect()
}

fn dist_bars(d: &Distribution) -> Vec<(f64, f64, u64)> {
    let h = &d.histogram;
    h.counts
        .iter()
        .enumerate()
        .map(|(i, c)| (h.lo + i as f64 * h.width, h.width, *c))
        .collect()
}

fn summary_table(out: &mut String, s: &RunSummary) {
    out.push_str("<table>\n");
    let kv = |out: &mut String, k: &str, v: String| row(out, &[k.into(), v]);
    kv(out, "seed (replay with DHT_SIM_SEED)", s.seed.to_string());
    kv(
        out,
        "nodes at the start / up at the end",
        format!("{} / {}", s.config.nodes, s.nodes_up),
    );
    kv(
        out,
        "network",
        format!(
            "{}, one-way latency {:.0} ms, jitter {:.0} ms, loss {:.2} %, RTT {:.0} ms",
            s.config.stack,
            s.config.latency_ms,
            s.config.jitter_ms,
            100.0 * s.config.loss,
            s.rtt_ms
        ),
    );
    kv(out, "virtual time", format!("{:.1} s", s.virtual_secs));
    kv(
        out,
        "wall time, events",
        format!(
            "{:.1} s, {} events ({:.0} per second)",
            s.wall_secs, s.events, s.events_per_sec
        ),
    );
    kv(
        out,
        "memory",
        format!(
            "~{:.1} KiB per node (estimate){}",
            s.memory.per_node_bytes as f64 / 1024.0,
            s.memory
                .peak_rss_kib
                .map(|k| format!("; peak RSS {:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_default()
        ),
    );
    kv(out, "trace", s.trace.clone());
    kv(out, "written by", s.generator.clone());
    for (k, v) in &s.config.args {
        kv(out, &format!("option --{k}"), v.clone());
    }
    out.push_str("</table>\n");
}

fn warnings(out: &mut String, s: &RunSummary, tag: &str) {
    if !s.complete || !s.notes.is_empty() {
        let _ = write!(
            out,
            "<div class=\"warn\"><strong>{}</strong><ul>",
            escape(&format!(
                "{tag}{}",
                if s.complete {
                    "notes"
                } else {
                    "this run stopped short: its figures are partial"
                }
            ))
        );
        for n in &s.notes {
            let _ = write!(out, "<li>{}</li>", escape(n));
        }
        out.push_str("</ul></div>\n");
    }
}

const HOW_LATENCY: &str = "Each curve is a CDF: for a latency on the x axis, the share of operations \
    done within it. Further left is faster; a curve that rises in steps shows lookup rounds (one step per \
    round trip). The x axis stops at the 99.9th percentile; the table gives the tail.";
const HOW_HOPS: &str = "Request–reply round trips on the causal chain of datagrams that brought a get \
    its first value (or ended a put): the lookup's depth. Kademlia needs about log2(nodes)/b of them.";
const HOW_LOAD: &str = "Nodes by what they carried over the whole run. A narrow hump is a balanced load; \
    a long tail to the right means hot nodes, named in the table below each plot.";
const HOW_TABLE: &str = "Nodes by the size of their routing table (all, and good ones) at the end.";
const HOW_TIMELINE: &str = "Operations binned by their start time: the share of gets that found a value \
    (green, left axis), the share of puts acknowledged (blue, left axis) and the gets' median time to the \
    first value (orange, right axis). Red lines and bands mark crashes, restarts, churn, partitions and \
    network changes (×n: that many).";

fn how(out: &mut String, text: &str) {
    let _ = writeln!(out, "<p class=\"how\">{}</p>", escape(text));
}

/// The report of one run, as one self-contained HTML page.
pub fn report(s: &RunSummary) -> String {
    let mut out = head(&format!("swarm run: {} nodes, seed {}", s.config.nodes, s.seed));
    warnings(&mut out, s, "");
    out.push_str("<section id=\"summary\"><h2>Run</h2>\n");
    summary_table(&mut out, s);
    out.push_str("<table><tr><th>phase</th><th>start, s</th><th>gets found</th><th>puts acknowledged</th><th>datagrams per node</th><th>bytes per node</th></tr>\n");
    for p in &s.phases {
        row(
            &mut out,
            &[
                p.name.clone(),
                format!("{:.1}", p.start_secs),
                format!(
                    "{}/{} ({:.2} %)",
                    p.gets.ok,
                    p.gets.started,
                    100.0 * p.gets.rate()
                ),
                format!(
                    "{}/{} ({:.2} %)",
                    p.puts.ok,
                    p.puts.started,
                    100.0 * p.puts.rate()
                ),
                format!("{:.1}", p.messages_per_node),
                format!("{:.0}", p.bytes_per_node),
            ],
        );
    }
    out.push_str("</table></section>\n");

    out.push_str("<section id=\"latency\"><h2>Latency</h2>\n");
    how(&mut out, HOW_LATENCY);
    if s.is_empty() {
        out.push_str("<p>No operation was started in this run.</p>\n");
    }
    for p in s.phases_with_ops() {
        let lines = phase_lines(p, "", false);
        if !lines.is_empty() {
            out.push_str(&figure(
                cdf_plot(&format!("Latency, phase {}", p.name), &lines, s.rtt_ms),
                &format!("Latency CDFs of the operations started in phase {}", p.name),
            ));
        }
        out.push_str("<table><tr><th>what</th><th>count</th><th>p50, ms</th><th>p90, ms</th><th>p99, ms</th><th>max, ms</th></tr>\n");
        latency_rows(&mut out, "get first value", &p.get_first_value);
        latency_rows(&mut out, "get done", &p.get_done);
        latency_rows(&mut out, "put done", &p.put_done);
        out.push_str("</table>\n");
    }
    out.push_str("</section>\n<section id=\"hops\"><h2>Hops</h2>\n");
    how(&mut out, HOW_HOPS);
    for p in s.phases_with_ops() {
        for (what, h) in [
            ("gets, to the first value", &p.get_hops),
            ("puts, to the end", &p.put_hops),
        ] {
            if h.iter().sum::<u64>() > 0 {
                out.push_str(&figure(
                    bar_plot(
                        &format!("Hops of {what}, phase {}", p.name),
                        "hops",
                        "operations",
                        &hop_bars(h),
                        BLUE,
                    ),
                    &format!("Operations by hop count ({what}), phase {}", p.name),
                ));
            }
        }
    }
    out.push_str("</section>\n<section id=\"load\"><h2>Load per node</h2>\n");
    how(&mut out, HOW_LOAD);
    let n = &s.per_node;
    for (what, d) in [
        ("datagrams sent", &n.messages_sent),
        ("bytes sent", &n.bytes_sent),
        ("datagrams received", &n.messages_received),
        ("stored values", &n.stored_values),
    ] {
        node_dist(&mut out, what, d);
    }
    out.push_str("</section>\n<section id=\"routing\"><h2>Routing tables</h2>\n");
    how(&mut out, HOW_TABLE);
    node_dist(&mut out, "nodes in the routing table", &n.table_nodes);
    node_dist(&mut out, "good nodes in the routing table", &n.good_nodes);
    out.push_str("</section>\n");
    if s.timeline.faults && !s.timeline.bins.is_empty() {
        out.push_str("<section id=\"timeline\"><h2>Over time</h2>\n");
        how(&mut out, HOW_TIMELINE);
        out.push_str(&figure(
            timeline_plot("Success and latency over time", &[("", &s.timeline, false)]),
            "Gets found and their median first-value time, per bin of virtual time, with the faults marked",
        ));
        marks_table(&mut out, &s.timeline);
        out.push_str("</section>\n");
    }
    out.push_str("<p class=\"how\">How to read each plot: docs/simulation.md, section “Reports”.</p>\n</body></html>\n");
    out
}

/// The latency CDFs of phase `phase` as a standalone SVG file (for a README or a slide), or
/// why not.
pub fn latency_svg(s: &RunSummary, phase: &str) -> Result<String, String> {
    let p = s
        .phases_with_ops()
        .find(|p| p.name == phase)
        .ok_or_else(|| format!("the run has no operations in a phase named {phase}"))?;
    let title = format!(
        "Latency, phase {}: {} nodes, RTT {:.0} ms",
        p.name, s.config.nodes, s.rtt_ms
    );
    let svg = cdf_plot(&title, &phase_lines(p, "", false), s.rtt_ms).map_err(|e| e.to_string())?;
    Ok(svg.replacen("<svg ", "<svg xmlns=\"http://www.w3.org/2000/svg\" ", 1))
}

fn marks_table(out: &mut String, t: &Timeline) {
    out.push_str("<table><tr><th>virtual second</th><th>mark</th><th>times</th></tr>\n");
    for m in t.marks.iter().take(200) {
        row(
            out,
            &[format!("{:.1}", m.at_secs), m.label.clone(), m.count.to_string()],
        );
    }
    out.push_str("</table>\n");
    if t.marks_dropped > 0 {
        let _ = writeln!(out, "<p>{} more marks were not kept.</p>", t.marks_dropped);
    }
}

fn node_dist(out: &mut String, what: &str, d: &Distribution) {
    if d.count == 0 {
        return;
    }
    out.push_str(&figure(
        bar_plot(&format!("Nodes by {what}"), what, "nodes", &dist_bars(d), BLUE),
        &format!(
            "{what}: mean {:.1}, median {:.1}, p99 {:.1}, max {:.1} over {} nodes",
            d.mean,
            d.percentiles.get(50).copied().unwrap_or(0.0),
            d.percentiles.get(99).copied().unwrap_or(0.0),
            d.max,
            d.count
        ),
    ));
    out.push_str("<table><tr><th>hottest: host</th><th>node id</th><th>value</th><th>× mean</th></tr>\n");
    for h in &d.hottest {
        row(
            out,
            &[
                h.host.to_string(),
                h.node_id.clone(),
                format!("{:.0}", h.value),
                format!("{:.1}", h.value / d.mean.max(1e-9)),
            ],
        );
    }
    out.push_str("</table>\n");
}

/// The comparison of runs A and B (same size), curves overlaid (A solid, B dashed) and the
/// headline figures side by side.
pub fn compare(a: &RunSummary, b: &RunSummary, headlines: &[Headline], names: (&str, &str)) -> String {
    let mut out = head(&format!(
        "swarm compare: {} nodes, A = {}, B = {}",
        a.config.nodes, names.0, names.1
    ));
    warnings(&mut out, a, "A: ");
    warnings(&mut out, b, "B: ");
    out.push_str("<section id=\"headlines\"><h2>Headline figures</h2>\n<table><tr><th>figure</th><th>A</th><th>B</th><th>B − A</th><th>change</th></tr>\n");
    for h in headlines {
        let class = match h.b_better() {
            Some(true) => " class=\"better\"",
            Some(false) => " class=\"worse\"",
            None => "",
        };
        let _ = writeln!(
            out,
            "<tr{class}><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:+.2}</td><td>{}</td></tr>",
            escape(&h.name),
            h.a,
            h.b,
            h.diff(),
            h.relative()
                .map_or("-".into(), |r| format!("{:+.1} %", 100.0 * r))
        );
    }
    out.push_str("</table>\n<pre>");
    out.push_str(&escape(&Table(headlines).to_string()));
    out.push_str("</pre></section>\n<section id=\"latency\"><h2>Latency</h2>\n");
    how(&mut out, HOW_LATENCY);
    for pa in a.phases_with_ops() {
        let Some(pb) = b.phases_with_ops().find(|p| p.name == pa.name) else {
            continue;
        };
        let mut lines = phase_lines(pa, "A ", false);
        lines.extend(phase_lines(pb, "B ", true));
        if !lines.is_empty() {
            out.push_str(&figure(
                cdf_plot(
                    &format!("Latency, phase {} (A solid, B dashed)", pa.name),
                    &lines,
                    a.rtt_ms,
                ),
                &format!("Latency CDFs of phase {}: A solid, B dashed", pa.name),
            ));
        }
        let share = |h: &[u64]| -> Vec<(f64, f64)> {
            let n = h.iter().sum::<u64>().max(1) as f64;
            h.iter()
                .enumerate()
                .map(|(i, c)| (i as f64, *c as f64 / n))
                .collect()
        };
        let mut hops = Vec::new();
        for (tag, p, dashed) in [("A", pa, false), ("B", pb, true)] {
            if p.get_hops.iter().sum::<u64>() > 0 {
                hops.push((format!("{tag} gets"), share(&p.get_hops), BLUE, dashed));
            }
            if p.put_hops.iter().sum::<u64>() > 0 {
                hops.push((format!("{tag} puts"), share(&p.put_hops), ORANGE, dashed));
            }
        }
        if !hops.is_empty() {
            out.push_str(&figure(
                line_plot(
                    &format!("Hops, phase {}", pa.name),
                    "hops",
                    "share of operations",
                    &hops,
                ),
                &format!(
                    "Share of operations by hop count, phase {}: A solid, B dashed",
                    pa.name
                ),
            ));
        }
    }
    out.push_str("</section>\n<section id=\"load\"><h2>Load per node</h2>\n<p class=\"how\">Each curve gives, for a share of the nodes (x, sorted from the least to the most loaded), the load of that node: a flat curve is a balanced load.</p>\n");
    for (what, da, db) in [
        (
            "datagrams sent",
            &a.per_node.messages_sent,
            &b.per_node.messages_sent,
        ),
        ("bytes sent", &a.per_node.bytes_sent, &b.per_node.bytes_sent),
        (
            "stored values",
            &a.per_node.stored_values,
            &b.per_node.stored_values,
        ),
        (
            "nodes in the routing table",
            &a.per_node.table_nodes,
            &b.per_node.table_nodes,
        ),
    ] {
        let pts = |d: &Distribution| -> Vec<(f64, f64)> {
            d.percentiles
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64, *v))
                .collect()
        };
        out.push_str(&figure(
            line_plot(
                &format!("{what} per node, by percentile"),
                "percentile of nodes",
                what,
                &[
                    ("A".into(), pts(da), BLUE, false),
                    ("B".into(), pts(db), RED, true),
                ],
            ),
            &format!(
                "{what}: A mean {:.1}, max {:.1}; B mean {:.1}, max {:.1}",
                da.mean, da.max, db.mean, db.max
            ),
        ));
    }
    out.push_str("</section>\n");
    if (a.timeline.faults || b.timeline.faults) && !(a.timeline.bins.is_empty() && b.timeline.bins.is_empty())
    {
        out.push_str("<section id=\"timeline\"><h2>Over time</h2>\n");
        how(&mut out, HOW_TIMELINE);
        out.push_str(&figure(
            timeline_plot(
                "Success and latency over time (A solid, B dashed)",
                &[("A", &a.timeline, false), ("B", &b.timeline, true)],
            ),
            "Gets found and median first-value time per bin: A solid, B dashed",
        ));
        out.push_str("</section>\n");
    }
    let _ = write!(
        out,
        "<p class=\"how\">A: seed {}, trace {}. B: seed {}, trace {}. How to read each plot: docs/simulation.md, section “Reports”.</p>\n</body></html>\n",
        a.seed,
        escape(&a.trace),
        b.seed,
        escape(&b.trace)
    );
    out
}
