"""The report's charts: matplotlib figures on the Agg canvas (no pyplot state) and their PNG bytes."""

from __future__ import annotations

import datetime as _dt
import io
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Sequence

from mltrack.cli.report_data import CallRow
from mltrack.cli.report_render import format_usd
from mltrack.cli.report_stats import bucket_of, bucket_size, buckets, percentile, split, summarize

_DPI = 100
_MAX_PANELS = 8  # per-group histograms: the busiest groups, the rest named in a note


def _matplotlib() -> tuple[Any, Any]:
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("mltrack report --plot / --html need matplotlib: pip install 'mltrack[plot]'") from exc
    return matplotlib, Figure


def require_matplotlib() -> None:
    """Fail early, with the install hint, when matplotlib is missing."""
    _matplotlib()


_STYLE = {"font.size": 9, "axes.titlesize": 11, "axes.spines.top": False, "axes.spines.right": False}


def _png(fig: Any) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=_DPI)
    return out.getvalue()


def _colors(keys: Sequence[str]) -> dict[str, Any]:
    matplotlib, _ = _matplotlib()
    palette = matplotlib.colormaps["tab10"].colors
    return {key: palette[i % len(palette)] for i, key in enumerate(keys)}


def _bucket_label(when: _dt.datetime, size: str) -> str:
    return when.strftime("%m-%d %H:00" if size == "hour" else "%Y-%m-%d")


def _time_ticks(ax: Any, labels: list[str]) -> None:
    every = max(1, len(labels) // 12)
    ax.set_xticks(range(0, len(labels), every))
    ax.set_xticklabels(labels[::every], rotation=30, ha="right")


def _usd_short(value: float) -> str:
    """A chart label: three significant digits are enough to read a bar ($0.648, $0.000150)."""
    return format_usd(Decimal(f"{value:.3g}")) if value else "$0"


def _legend(ax: Any) -> None:
    """Beside the plot, where it hides no bar or label."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def _note(fig: Any, lines: list[str]) -> None:
    if lines:
        fig.text(0.01, 0.01, "\n".join(lines), fontsize=8, color="#a33", va="bottom", ha="left")


def cost_over_time(rows: Sequence[CallRow], by: str, order: list[str]) -> Any:
    """Cost per hour or day (UTC), stacked by group; unpriced groups named in a note, not drawn as $0."""
    _, Figure = _matplotlib()
    size = bucket_size(rows)
    times = buckets(rows, size)
    index = {t: i for i, t in enumerate(times)}
    per_group = split(rows, by)
    colors = _colors(order)
    fig = Figure(figsize=(10, 5.2))
    ax = fig.add_subplot()
    bottom = [0.0] * len(times)
    totals = [Decimal(0)] * len(times)
    notes = []
    for key in order:
        items = per_group.get(key, [])
        unpriced = sum(1 for r in items if r.cost is None)
        if unpriced == len(items):
            notes.append(f"unpriced, not in the cost: {by} {key} ({unpriced} call{'s' if unpriced != 1 else ''})")
            continue
        heights = [0.0] * len(times)
        for r in items:
            if r.cost is not None:
                i = index[bucket_of(r.time, size)]
                heights[i] += float(r.cost)
                totals[i] += r.cost
        label = key if not unpriced else f"{key} ({unpriced} of {len(items)} calls unpriced, not in the cost)"
        ax.bar(range(len(times)), heights, bottom=bottom, color=colors[key], label=label, width=0.8)
        bottom = [b + h for b, h in zip(bottom, heights)]
    for i, total in enumerate(totals):
        if total > 0 and len(times) <= 48:
            ax.annotate(_usd_short(float(total)), (i, bottom[i]), ha="center", va="bottom", fontsize=7,
                        xytext=(0, 2), textcoords="offset points")
    if not any(r.cost is not None for r in rows):
        ax.text(0.5, 0.5, "no priced calls in this window", transform=ax.transAxes, ha="center", color="#a33")
    if not any(totals):
        ax.set_ylim(0, 0.01)
    _time_ticks(ax, [_bucket_label(t, size) for t in times])
    ax.set_ylabel("cost (USD)")
    ax.set_xlabel(f"{size} (UTC)")
    ax.yaxis.set_major_formatter(lambda v, _pos: _usd_short(v))
    ax.set_title(f"Cost per {size}, stacked by {by} (total {format_usd(sum(totals, Decimal(0)))})")
    _legend(ax)
    ax.margins(y=0.15)
    ax.set_ylim(bottom=0)
    _note(fig, notes)
    fig.tight_layout(rect=(0, 0.03 * (len(notes) + 1) if notes else 0, 1, 1))
    return fig


def _distributions(rows: Sequence[CallRow], by: str, order: list[str], value: Callable[[CallRow], float | None],
                   unit: str, title: str, empty: str) -> Any:
    """One histogram per group (the busiest first) with p50 and p95 marked and bar counts labelled."""
    _, Figure = _matplotlib()
    per_group = split(rows, by)
    colors = _colors(order)
    series = [(k, [v for v in map(value, per_group.get(k, [])) if v is not None]) for k in order]
    series = [(k, vs) for k, vs in series if vs]
    shown = sorted(series, key=lambda kv: -len(kv[1]))[:_MAX_PANELS]
    panels = max(1, len(shown))
    fig = Figure(figsize=(10, 1.0 + 2.3 * panels))
    if not shown:
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, empty, ha="center", va="center", color="#a33")
        ax.set_title(title)
        fig.tight_layout()
        return fig
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    for ax, (key, values) in zip(axes, shown):
        bins = 20 if len(values) >= 20 else max(5, len(values))
        counts, _edges, patches = ax.hist(values, bins=bins, color=colors[key], alpha=0.85)
        ax.bar_label(patches, labels=[str(int(c)) if c else "" for c in counts], fontsize=7)
        p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
        for q, v, style, side, dx in (("p50", p50, "--", "right", -3), ("p95", p95, ":", "left", 3)):
            ax.axvline(v, color="black", linestyle=style, linewidth=1)
            ax.annotate(f"{q} {v:,.1f} {unit}", (v, 1), xycoords=("data", "axes fraction"), ha=side, va="top",
                        fontsize=8, xytext=(dx, -2), textcoords="offset points",
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
        ax.set_ylabel("calls")
        ax.set_title(f"{by} {key}: {len(values)} call{'s' if len(values) != 1 else ''}", fontsize=9, loc="left")
        ax.margins(y=0.2)
    axes[-1].set_xlabel(unit)
    fig.suptitle(title)
    hidden = [k for k, _ in series if k not in {s for s, _ in shown}]
    _note(fig, [f"not shown (fewer calls): {', '.join(hidden)}"] if hidden else [])
    fig.tight_layout(rect=(0, 0.03 if hidden else 0, 1, 1))
    return fig


def latency_distribution(rows: Sequence[CallRow], by: str, order: list[str]) -> Any:
    return _distributions(rows, by, order, lambda r: r.latency_ms, "ms", f"Latency per call, by {by}",
                          "no call with a latency in this window")


def ttft_distribution(rows: Sequence[CallRow], by: str, order: list[str]) -> Any:
    return _distributions(rows, by, order, lambda r: r.ttft_ms, "ms", f"Time to first token per call, by {by}",
                          "no streamed calls in this window (time to first token is measured on streamed calls)")


def tokens_distribution(rows: Sequence[CallRow], by: str, order: list[str]) -> Any:
    return _distributions(rows, by, order, lambda r: float(r.total_tokens), "tokens",
                          f"Total tokens per call (prompt + completion), by {by}", "no calls in this window")


def cached_share(rows: Sequence[CallRow], by: str, order: list[str]) -> Any:
    """Share of prompt tokens served from the provider's cache, per group, labelled with the token counts."""
    _, Figure = _matplotlib()
    per_group = split(rows, by)
    groups = [summarize(k, per_group.get(k, [])) for k in order]
    colors = _colors(order)
    fig = Figure(figsize=(10, 1.4 + 0.45 * max(1, len(groups))))
    ax = fig.add_subplot()
    shares = [100 * g.cached_share for g in groups]
    bars = ax.barh([g.key for g in groups], shares, color=[colors[g.key] for g in groups])
    ax.bar_label(bars, labels=[f"{s:.1f}% ({g.cached_prompt_tokens:,} of {g.prompt_tokens:,} prompt tokens)"
                               for s, g in zip(shares, groups)], fontsize=8, padding=3)
    ax.invert_yaxis()
    ax.set_xlim(0, 130)
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel("cached prompt tokens (% of prompt tokens)")
    ax.set_title(f"Cached-token share per {by}")
    fig.tight_layout()
    return fig


def error_rate_over_time(rows: Sequence[CallRow], by: str, order: list[str]) -> Any:
    """Share of failed calls per hour or day (all calls), labelled ``failed/calls``; one line per group."""
    _, Figure = _matplotlib()
    size = bucket_size(rows)
    times = buckets(rows, size)
    index = {t: i for i, t in enumerate(times)}
    calls, errors = [0] * len(times), [0] * len(times)
    per_group = {k: ([0] * len(times), [0] * len(times)) for k in order}
    key_of = split(rows, by)
    for key, items in key_of.items():
        for r in items:
            i = index[bucket_of(r.time, size)]
            calls[i] += 1
            per_group[key][0][i] += 1
            if r.error:
                errors[i] += 1
                per_group[key][1][i] += 1
    rates = [100 * e / c if c else 0.0 for e, c in zip(errors, calls)]
    fig = Figure(figsize=(10, 5))
    ax = fig.add_subplot()
    bars = ax.bar(range(len(times)), rates, color="#d62728", alpha=0.35, width=0.8, label="all calls")
    if len(times) <= 48:
        ax.bar_label(bars, labels=[f"{e}/{c}" if c else "" for e, c in zip(errors, calls)], fontsize=7)
    colors = _colors(order)
    top = max(rates, default=0.0)
    if 1 < len(order) <= 6:
        for key in order:
            n, e = per_group[key]
            points = [(i, 100 * e[i] / n[i]) for i in range(len(times)) if n[i]]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, linewidth=1,
                        color=colors[key], label=key)
                top = max(top, max(p[1] for p in points))
    _time_ticks(ax, [_bucket_label(t, size) for t in times])
    ax.set_ylim(0, min(100.0, max(5.0, top * 1.25)))
    ax.set_ylabel("failed calls (%)")
    ax.set_xlabel(f"{size} (UTC); bar labels: failed/calls")
    total_e, total_c = sum(errors), sum(calls)
    ax.set_title(f"Error rate per {size} ({total_e} of {total_c} calls failed"
                 f"{f', {100 * total_e / total_c:.1f}%' if total_c else ''})")
    _legend(ax)
    fig.tight_layout()
    return fig


CHARTS: dict[str, Callable[[Sequence[CallRow], str, list[str]], Any]] = {  # file stem: figure builder
    "cost_over_time": cost_over_time,
    "latency_distribution": latency_distribution,
    "ttft_distribution": ttft_distribution,
    "tokens_per_call": tokens_distribution,
    "cached_share": cached_share,
    "error_rate_over_time": error_rate_over_time,
}


def render_charts(rows: Sequence[CallRow], by: str, order: list[str]) -> dict[str, bytes]:
    """Every chart as PNG bytes, by file stem; ``order`` is the groups' order (colours follow it)."""
    matplotlib, _ = _matplotlib()
    with matplotlib.rc_context(_STYLE):  # the report's look, without touching the caller's settings
        return {name: _png(chart(rows, by, order)) for name, chart in CHARTS.items()}


def write_charts(charts: dict[str, bytes], folder: Path) -> list[Path]:
    """Write the charts as ``<name>.png`` into ``folder`` (created when missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, png in charts.items():
        path = folder / f"{name}.png"
        path.write_bytes(png)
        written.append(path)
    return written
