"""Fleet evaluation: `alpamayo-eval` over many bags, in-process or on Ray, and its report.

`bag_set` finds the bags and their scene tags, `worker` evaluates bags with one loaded model,
`engines` runs the workers (one after another, or as Ray actors), `aggregate` and `compare`
turn per-bag records into tables, `report_html` writes the page people look at.
"""
