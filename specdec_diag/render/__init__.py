"""Presentation: every way a report (docs/architecture.md §4) or a gate outcome is shown.

``analysis`` computes the report dict and the gate's decisions; the modules here only turn those into
text, markup or charts, so a saved JSON report renders again later without the tables. One module per
format: :mod:`.terminal` (rich), :mod:`.markdown_report`, :mod:`.html_report` (with the plotly charts
of :mod:`.figures` and the series shaping of :mod:`.charts`), :mod:`.json_report`, :mod:`.junit`
(xml) and :mod:`.github` (workflow annotations and the step summary); :mod:`.text` holds the labels
and number formats they share. Heavy renderers (rich, plotly) are imported when a format is asked
for, so ``report --format json`` does not load plotly.
"""

from __future__ import annotations

from typing import Any

#: the report formats, in the order ``report --format`` lists them
FORMATS = ("terminal", "markdown", "html", "json", "junit")


def render(report: dict[str, Any], fmt_name: str, console: Any = None) -> str | None:
    """Render to a string (None for terminal, which prints to ``console``)."""
    if fmt_name == "terminal":
        from specdec_diag.render.terminal import render_terminal

        render_terminal(report, console)
        return None
    if fmt_name == "markdown":
        from specdec_diag.render.markdown_report import render_markdown

        return render_markdown(report)
    if fmt_name == "html":
        from specdec_diag.render.html_report import render_html

        return render_html(report)
    if fmt_name == "json":
        from specdec_diag.render.json_report import render_json

        return render_json(report)
    if fmt_name == "junit":
        from specdec_diag.render.junit import render_junit

        return render_junit(report)
    raise ValueError(f"unknown format {fmt_name!r}; choose one of {', '.join(FORMATS)}")


__all__ = ["FORMATS", "render"]
