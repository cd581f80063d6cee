"""capdsl: capitation contracts as code.

Pipeline (one module per stage, data flowing one way):
  syntax (source → AST) → check (AST → checked model) → lower (→ evaluation
  tree) → interpret (exact Decimal) | sql (DuckDB, Spark, warehouse dialects).
`capdsl.pipeline` chains the stages; `capdsl.tools.cli` is a thin front door.
"""

__version__ = "0.1.0"
