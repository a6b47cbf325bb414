"""The dashboard at /ui: server-rendered pages that read what the engine already computed.

A reader only (architecture, "Growing the house"): it never calls Label Studio and never trains, so a
page renders in milliseconds whatever Label Studio is doing. `data.py` gathers a project's figures from
the engine and the store, `svg.py` draws charts as inline SVG (nothing fetched at view time), and
`pages.py` renders the HTML with Jinja2, autoescaped: task texts and labels are a stranger's input.
"""
