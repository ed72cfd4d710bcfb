"""Documents: the data jinja2 templates receive, built from derivations and numbers."""
