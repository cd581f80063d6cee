"""What users run: the CLI and its commands (impact of a new version, explain, embedded examples,
test generation, rendering, the language server)."""
