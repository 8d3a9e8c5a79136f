"""The report's Jinja2 templates (HTML + inline CSS; no script, no external resource).

Every number cell carries `data-metric="<group>/<method>/<horizon>/<field>"` (or
`<group>/status/<name>`, `<group>/latency/<field>`), so tests and tools can find the value the
page shows for a fleet.json entry.
"""

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.moment { border: 1px solid #ccc; margin: 1em 0; padding: 0.6em; display: flex; gap: 1em; }
.moment img { width: 560px; }
.error { color: #c62828; }
pre { white-space: pre-wrap; max-width: 60em; }
"""

MACROS = """
{% macro num(value, key) -%}
<td data-metric="{{ key }}">{{ fmt(value) }}</td>
{%- endmacro %}
{% macro error_table(group, summary, horizons) -%}
<table><tr><th>{{ group }}</th><th>model minADE (m)</th><th>model minFDE (m)</th>
<th>selected ADE (m)</th><th>selected FDE (m)</th><th>const. vel. ADE (m)</th>
<th>const. vel. FDE (m)</th><th>scored / plans</th></tr>
{% for h in horizons %}{% set k = hkey(h) %}{% set m = summary.model[k] %}
{% set cv = summary.constant_velocity[k] %}<tr><td>{{ k }}</td>
{{ num(m.min_ade_m, group ~ '/model/' ~ k ~ '/min_ade_m') }}
{{ num(m.min_fde_m, group ~ '/model/' ~ k ~ '/min_fde_m') }}
{{ num(m.ade_m, group ~ '/model/' ~ k ~ '/ade_m') }}
{{ num(m.fde_m, group ~ '/model/' ~ k ~ '/fde_m') }}
{{ num(cv.ade_m, group ~ '/constant_velocity/' ~ k ~ '/ade_m') }}
{{ num(cv.fde_m, group ~ '/constant_velocity/' ~ k ~ '/fde_m') }}
<td>{{ m.num_scored }} / {{ m.num_scored + m.num_excluded }}</td></tr>{% endfor %}
</table>
{%- endmacro %}
{% macro moment_card(mo, picture_uri, picture_href) -%}
<div class="moment">
{% if picture_uri %}<a href="{{ picture_href }}"><img alt="plan picture" src="{{ picture_uri }}">
</a>
{% else %}<p>(no picture: evaluated without rendering)</p>{% endif %}
<div><b>{{ mo.bag }}</b> ({{ mo.scene }}), plan {{ mo.plan_index }},
t0 = {{ "%.2f" | format(mo.t0_ns * 1e-9) }} s,
status {{ status_name(mo.status) }}<br>
at {{ mo.horizon_s }} s: ADE {{ fmt(mo.ade_m) }} m, FDE {{ fmt(mo.fde_m) }} m,
minADE {{ fmt(mo.min_ade_m) }} m
(const. velocity ADE {{ fmt(mo.cv_ade_m) }} m, FDE {{ fmt(mo.cv_fde_m) }} m)<br>
latency {{ fmt(mo.latency_ms, 0) }} ms<br>meta-action: {{ mo.meta_action or "(none)" }}
<pre>{{ mo.reasoning or "(no reasoning text)" }}</pre>
{% if picture_href %}<a href="{{ picture_href }}">full picture</a>{% endif %}</div></div>
{%- endmacro %}
"""

FLEET = MACROS + """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>alpamayo fleet evaluation</title>
<style>{{ style }}</style></head><body>
<h1>Fleet evaluation{% if meta.label %} {{ meta.label }}{% endif %}</h1>
<p>model {{ meta.model_id }} ({{ meta.model_dir }}), backend {{ meta.backend }},
{{ meta.num_traj_samples }} samples, {{ meta.plan_rate_hz }}
plans/s of bag time, seed {{ meta.seed }};
{{ meta.num_bags }} bags ({{ meta.num_failed }} failed), engine {{ meta.engine }},
{{ meta.workers }} worker(s), {{ "%.1f" | format(timing.wall_s) }} s wall.</p>
<h2>Overall</h2>
{{ error_table('overall', metrics.overall.summary, meta.horizons_s) }}
<h2>Statuses and latency</h2>
<table id="status-latency"><tr><th>group</th><th>bags</th><th>OK</th><th>DEGRADED</th><th>
INVALID</th>
<th>plans timed</th><th>p50 (ms)</th><th>p90 (ms)</th><th>p99 (ms)</th><th>max (ms)</th></tr>
{% for name, g, t in groups %}<tr><td>{{ name }}</td><td>{{ g.num_bags }}</td>
{% for s in statuses %}<td data-metric="{{ name }}/status/{{ s }}">
{{ g.status_counts.get(s, 0) }}</td>{% endfor %}
<td>{{ t.num_plans }}</td>{% for f in latency_fields %}{{ num(t[f], name ~ '/latency/' ~ f) }}
{% endfor %}</tr>
{% endfor %}</table>
<h2>Per scene</h2>
<img alt="errors per scene" src="{{ plots.errors }}">
 <img alt="statuses per scene" src="{{ plots.statuses }}">
{% for scene, g in metrics.scenes.items() %}
<h3>{{ scene }} ({{ g.num_bags }} bags)</h3>
{{ error_table('scene:' ~ scene, g.summary, meta.horizons_s) }}
{% endfor %}
<h2>Per bag</h2>
<table id="bags"><tr><th>bag</th><th>scene</th><th>OK</th><th>DEGRADED</th><th>INVALID</th>
{% for h in meta.horizons_s %}<th>minADE {{ hkey(h) }} (m)</th>{% endfor %}<th>worker</th><th>
error</th></tr>
{% for name, b in metrics.bags.items() %}<tr><td>{{ name }}</td><td>{{ b.scene }}</td>
{% if b.error %}<td></td><td></td><td></td>{% for h in meta.horizons_s %}<td></td>{% endfor %}
<td>{{ timing.bags[name].worker }}</td><td class="error">{{ b.error }}</td>
{% else %}{% for s in statuses %}<td data-metric="bag:{{ name }}/status/{{ s }}">
{{ b.status_counts.get(s, 0) }}</td>{% endfor %}
{% for h in meta.horizons_s %}
{{ num(b.summary.model[hkey(h)].min_ade_m, 'bag:' ~ name ~ '/model/' ~ hkey(h) ~ '/min_ade_m') }}
{% endfor %}
<td>{{ timing.bags[name].worker }}</td><td></td>{% endif %}</tr>
{% endfor %}</table>
<h2>Reasoning samples</h2>
{% for r in reasoning %}<p><b>{{ r.bag }}</b> t0 = {{ "%.2f" | format(r.t0_ns * 1e-9) }} s
({{ r.meta_action or "no meta-action" }}):</p><pre>{{ r.reasoning }}</pre>
{% else %}<p>The model produced no reasoning text in these plans.</p>{% endfor %}
<h2>Worst {{ moments | length }} moments (selected sample's ADE at {{ meta.rank_horizon_s }}
 s)</h2>
{% for mo, uri, href in moment_cards %}{{ moment_card(mo, uri, href) }}{% endfor %}
</body></html>
"""

COMPARISON = MACROS + """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>alpamayo fleet comparison</title>
<style>{{ style }}</style></head><body>
<h1>Comparison: A vs B</h1>
<p>A: model {{ meta.a.model_id }} ({{ meta.a.model_dir }}), backend {{ meta.a.backend }},
{{ meta.a.num_traj_samples }} samples, flow steps {{ meta.a.num_flow_steps }} (0 = the model's),
seed {{ meta.a.seed }} (<a href="a/report.html">
report A</a>)<br>
B: model {{ meta.b.model_id }} ({{ meta.b.model_dir }}), backend {{ meta.b.backend }},
{{ meta.b.num_traj_samples }} samples, flow steps {{ meta.b.num_flow_steps }} (0 = the model's),
seed {{ meta.b.seed }} (<a href="b/report.html">
report B</a>)<br>
{{ meta.a.num_bags }} bags; failed: A {{ meta.a.num_failed }}, B {{ meta.b.num_failed }}.</p>
{% for name, pair in groups %}
<h2>{{ name }}</h2>
<table><tr><th>{{ name }}</th><th>A minADE (m)</th><th>B minADE (m)</th><th>B - A (m)</th>
<th>A minFDE (m)</th><th>B minFDE (m)</th><th>B - A (m)</th><th>const. vel. ADE (m)</th></tr>
{% for h in horizons %}{% set k = hkey(h) %}
{% set a = pair.a.summary.model[k] if pair.a else none %}
{% set b = pair.b.summary.model[k] if pair.b else none %}<tr><td>{{ k }}</td>
{{ num(a.min_ade_m if a else none, name ~ '/a/model/' ~ k ~ '/min_ade_m') }}
{{ num(b.min_ade_m if b else none, name ~ '/b/model/' ~ k ~ '/min_ade_m') }}
<td>{{ fmt(diff(a, b, 'min_ade_m')) }}</td>
{{ num(a.min_fde_m if a else none, name ~ '/a/model/' ~ k ~ '/min_fde_m') }}
{{ num(b.min_fde_m if b else none, name ~ '/b/model/' ~ k ~ '/min_fde_m') }}
<td>{{ fmt(diff(a, b, 'min_fde_m')) }}</td>
<td>{{ fmt(pair.a.summary.constant_velocity[k].ade_m if pair.a else none) }}</td></tr>{% endfor %}
</table>
<p>statuses A: {{ pair.a.status_counts if pair.a else "-" }}
; B: {{ pair.b.status_counts if pair.b else "-" }}</p>
{% endfor %}
<h2>Where they differ most ({{ differences.num_matched }} matched plans; ADE of the selected
sample at {{ differences.horizon_s }} s; {{ differences.num_unmatched }} not scored by both)</h2>
{% for d, a_card, b_card in diff_cards %}
<h3>{{ d.a.bag }} t0 = {{ "%.2f" | format(d.a.t0_ns * 1e-9) }}
 s: B - A = {{ fmt(d.delta_ade_m) }} m</h3>
<div style="display:flex; gap:1em"><div><b>A</b>{{ moment_card(d.a, a_card[0], a_card[1]) }}</div>
<div><b>B</b>{{ moment_card(d.b, b_card[0], b_card[1]) }}</div></div>
{% endfor %}
</body></html>
"""
