"""The report as one self-contained HTML file: inline CSS, figures as base64 ``data:`` URIs.

Nothing is fetched when the page opens (no scripts or fonts from elsewhere, no links to files
beside it), so the file can be mailed, archived, or opened offline. The claims sheet opens the page
(``<section id="claims">``), before the parts' sections, as in the Markdown. A small inline script counts
the figures that decoded and writes the count to ``<body data-figures-loaded>`` (the browser test
reads it).
"""

from __future__ import annotations

import base64
import html

from ninr.report.document import PartReport, Report, Section, run_facts

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
caption { font-weight: 600; text-align: left; padding: 0.3em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
.note { color: #555; font-size: 0.9em; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.85em; }
"""

SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute("data-figures-loaded", String(ok));
  document.body.setAttribute("data-figures-total", String(imgs.length));
});
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _claims(body: PartReport) -> str:
    """The claims sheet's section (no run facts: it reads every part)."""
    return "\n".join([f'<section id="{_e(body.part)}">', f"<h2>{_e(body.title)}</h2>", *_body(body), "</section>"])


def _section(section: Section) -> str:
    body = section.body
    parts = [f'<section id="part-{_e(body.part)}">', f"<h2>{_e(body.title)} (<code>{_e(body.part)}</code>)</h2>"]
    facts = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in run_facts(section))
    parts.append(f'<table class="facts">{facts}</table>')
    parts += _body(body)
    parts.append("</section>")
    return "\n".join(parts)


def _body(body: PartReport) -> list[str]:
    """Notes, tables with their notes, then figures."""
    parts = [f'<p class="note"><strong>{_e(note)}</strong></p>' for note in body.notes]
    for table in body.tables:
        parts.append(table.to_html())
        if table.note:
            parts.append(f'<p class="note">{_e(table.note)}</p>')
    for fig in body.figures:
        img = f'<img alt="{_e(fig.caption)}" src="{data_uri(fig.png)}">'
        caption = f"<figcaption>{_e(fig.caption)}</figcaption>"
        parts.append(f'<figure id="figure-{_e(body.part)}-{_e(fig.name)}">{img}{caption}</figure>')
    return parts


def render_html(report: Report) -> str:
    """The whole report as one HTML document."""
    claims = [_claims(report.claims)] if report.claims is not None else []
    sections = "\n".join([*claims, *(_section(s) for s in report.sections)])
    version = report.versions.get("ninr", "?")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{_e(report.title)}</title>
<style>{CSS}</style>
<script>{SCRIPT}</script>
</head>
<body>
<h1>{_e(report.title)}</h1>
<p>{_e(report.description)}</p>
<p class="note">Generated {_e(report.generated_at)} by ninr {_e(version)}.</p>
{sections}
<section id="configuration">
<h2>Configuration</h2>
<p>From <code>{_e(report.config_source)}</code>:</p>
<pre>{_e(report.config_text)}</pre>
</section>
</body>
</html>
"""
