"""Analysis: metric definitions (metrics), Leviathan theory (theory), diagnosis rules (rules), the
report (report) and the CI gate (gate). Never imports torch; submodules are imported on use so the
dashboard can take metrics without pulling in the renderers."""
