"""The language: source text → parse tree → AST → checked AST (syntax, checks, units, band
coverage), and the tools that read the text itself (formatter, highlighter)."""
